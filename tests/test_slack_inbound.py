"""Slack inbound: signatures, which messages get an answer, their text, buttons (no gateway)."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from channels.slack import SlackChannel
from channels.slack.inbound import BotIdentity, classify, clean_text
from gateway.channel import InboundRequest
from gateway.errors import ConfigError, WebhookRejected
from gateway.events import Identity
from switchboard.testing import StubServices
from tests.fakes.slack import BOT_ID, BOT_USER, SECRET, TEAM, FakeMessage, FakeSlack
from tests.fakes.slack_inbound import action_body, event_body, mention, message, signed_headers

ME = BotIdentity(BOT_USER, BOT_ID, TEAM)



@pytest.fixture
async def channel() -> AsyncIterator[SlackChannel]:
    async with FakeSlack() as slack, aiohttp.ClientSession() as http:
        services: Any = StubServices(http)
        raw = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_base}
        chan = SlackChannel.from_config("slack", raw, services)
        assert isinstance(chan, SlackChannel)
        async with chan:
            yield chan


def request(body: bytes, headers: dict[str, str]) -> InboundRequest:
    return InboundRequest("POST", "/webhooks/slack", {}, CIMultiDictProxy(CIMultiDict(headers)), body,
                          "http://gw/webhooks/slack")


async def parse(chan: SlackChannel, body: bytes, content_type: str = "application/json") -> Any:
    req = request(body, signed_headers(body, content_type=content_type))
    await chan.verify(req)
    return await chan.parse(req)


# -- signatures ------------------------------------------------------------------------------------
async def test_signed_request_passes(channel: SlackChannel) -> None:
    body = event_body(mention("hi"))
    await channel.verify(request(body, signed_headers(body)))


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda: signed_headers(b"{}", secret="not-the-secret"),
        # Timestamps are taken when the test runs, not when it is collected (a long suite in between
        # would bring "6 minutes ahead" back inside the window).
        lambda: signed_headers(b"{}", timestamp=int(time.time()) - 6 * 60),  # a replay
        lambda: signed_headers(b"{}", timestamp=int(time.time()) + 6 * 60),
        lambda: {"Content-Type": "application/json"},
        lambda: {**signed_headers(b"{}"), "X-Slack-Request-Timestamp": "soon"},
        lambda: {**signed_headers(b"{}"), "X-Slack-Signature": "v0=é"},
    ],
    ids=["wrong-secret", "old", "future", "unsigned", "bad-timestamp", "non-ascii"],
)
async def test_bad_signatures_are_401(channel: SlackChannel, make_headers: Callable[[], dict[str, str]]) -> None:
    with pytest.raises(WebhookRejected) as info:
        await channel.verify(request(b"{}", make_headers()))
    assert info.value.status == 401


async def test_tampered_body_is_401(channel: SlackChannel) -> None:
    headers = signed_headers(event_body(mention("hi")))
    with pytest.raises(WebhookRejected) as info:
        await channel.verify(request(event_body(mention("give me admin")), headers))
    assert info.value.status == 401


# -- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message_part"),
    [
        ({"bot_token": "xoxb-1"}, "signing_secret"),
        ({"bot_token": "xoxb-1", "signing_secret": "s", "colour": "red"}, "colour: unknown key"),
        ({"bot_token": "xoxb-1", "mode": "socket"}, "app_token"),
        ({"bot_token": "xoxb-1", "signing_secret": "s", "api_base": "slack.com"}, "api_base"),
    ],
)
def test_settings_mistakes_name_the_key(raw: dict[str, Any], message_part: str) -> None:
    with pytest.raises(ConfigError, match=message_part):
        SlackChannel.validate("team", {"type": "slack", **raw})


def test_api_base_gets_its_trailing_slash() -> None:
    settings = SlackChannel.validate("team", {"type": "slack", "bot_token": "x", "signing_secret": "s",
                                              "api_base": "http://127.0.0.1:9/api"})
    assert getattr(settings, "api_base") == "http://127.0.0.1:9/api/"  # noqa: B009


# -- what deserves an answer ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (mention("hi"), "mention"),
        (message("hi"), "dm"),
        (message("more", channel="C1", channel_type="channel", thread_ts="1.0", ts="2.0"), "thread_reply"),
        (message("top level chatter", channel="C1", channel_type="channel"), None),
        (message(f"<@{BOT_USER}> in thread", channel="C1", channel_type="channel", thread_ts="1.0"), None),
        (message("from a bot", bot_id="B999"), None),
        (message("bot message", subtype="bot_message"), None),
        (message("from myself", user=BOT_USER), None),
        (message("edited", subtype="message_changed"), None),
        (message("gone", subtype="message_deleted"), None),
        (message("joined", subtype="channel_join", channel="C1", channel_type="channel", thread_ts="1.0"), None),
        (message("also to channel", subtype="thread_broadcast", channel="C1", channel_type="channel",
                 thread_ts="1.0", ts="2.0"), "thread_reply"),
        (mention("in a dm", channel="D0001"), None),  # message.im answers it
        ({"type": "reaction_added", "user": "U1"}, None),
    ],
)
def test_classify(event: dict[str, Any], expected: str | None) -> None:
    assert classify(event, ME) == expected


def test_clean_text_removes_our_mention_and_names_the_rest() -> None:
    raw = (f"<@{BOT_USER}> ask <@U2|bob> in <#C9|general> about <https://x.io/a?b=1&amp;c=2|the doc> "
           "or <https://y.io>, ping <!here> &lt;b&gt; &amp; <mailto:a@b.co|a@b.co>")
    assert clean_text(raw, BOT_USER) == (
        "ask @bob in #general about the doc (https://x.io/a?b=1&c=2) or https://y.io, ping @here <b> & a@b.co"
    )


def test_clean_text_of_a_bare_user_mention_keeps_the_id() -> None:
    assert clean_text(f"<@{BOT_USER}|switchboard> what does <@U77> do?", BOT_USER) == "what does @U77 do?"


# -- parse -----------------------------------------------------------------------------------------
async def test_url_verification_returns_the_challenge(channel: SlackChannel) -> None:
    body = json.dumps({"type": "url_verification", "token": "t", "challenge": "3eZbrw1aB"}).encode()
    result = await parse(channel, body)
    assert result.status == 200 and not result.events
    assert json.loads(result.body) == {"challenge": "3eZbrw1aB"}


async def test_mention_becomes_an_event_answered_in_its_thread(channel: SlackChannel) -> None:
    result = await parse(channel, event_body(mention("where is my order?", ts="1690.1"), event_id="Ev42"))
    [event] = result.events
    assert event.key == "Ev42"
    assert event.identity == Identity("slack", TEAM, "U0001")
    assert event.text == "where is my order?"
    assert event.scope == "C0001:1690.1"
    assert event.reply["channel"] == "C0001" and event.reply["thread_ts"] == "1690.1"


async def test_follow_ups_only_in_threads_the_bot_was_asked_into(channel: SlackChannel) -> None:
    await parse(channel, event_body(mention("hi", ts="100.1"), event_id="Ev1"))
    ours = message("and then?", channel="C0001", channel_type="channel", thread_ts="100.1", ts="100.2")
    other = message("unrelated", channel="C0001", channel_type="channel", thread_ts="200.1", ts="200.2")
    [follow_up] = (await parse(channel, event_body(ours, event_id="Ev2"))).events
    assert follow_up.scope == "C0001:100.1" and follow_up.reply["thread_ts"] == "100.1"
    assert (await parse(channel, event_body(other, event_id="Ev3"))).events == []


async def test_a_mention_inside_a_thread_joins_that_thread(channel: SlackChannel) -> None:
    [event] = (await parse(channel, event_body(mention("help", ts="300.5", thread_ts="300.1")))).events
    assert event.scope == "C0001:300.1" and event.reply["thread_ts"] == "300.1"


async def test_dm_is_one_conversation_answered_in_place(channel: SlackChannel) -> None:
    [first] = (await parse(channel, event_body(message("hi", ts="1.1"), event_id="EvA"))).events
    [second] = (await parse(channel, event_body(message("again", ts="1.2"), event_id="EvB"))).events
    assert first.scope == second.scope == "D0001"
    assert first.reply["thread_ts"] is None


async def test_empty_mention_is_not_sent_to_the_agent(channel: SlackChannel) -> None:
    assert (await parse(channel, event_body(mention("  ")))).events == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", json.dumps({"type": "event_callback"}).encode()])
async def test_malformed_bodies_are_400(channel: SlackChannel, body: bytes) -> None:
    with pytest.raises(WebhookRejected) as info:
        await parse(channel, body)
    assert info.value.status == 400


async def test_unknown_envelope_types_are_acknowledged(channel: SlackChannel) -> None:
    result = await parse(channel, json.dumps({"type": "app_rate_limited", "minute_rate_limited": 1}).encode())
    assert result.status == 200 and result.events == []


# -- interactivity ---------------------------------------------------------------------------------
def answered(blocks_value: dict[str, Any]) -> FakeMessage:
    value = json.dumps(blocks_value)
    buttons = [{"type": "button", "action_id": a, "value": value, "text": {"type": "plain_text", "text": "x"}}
               for a in ("switchboard_feedback_positive", "switchboard_feedback_negative", "switchboard_retry")]
    return FakeMessage("C0001", "500.2", "answer", "500.1", [{"type": "actions", "elements": buttons}])


async def test_feedback_button_becomes_a_feedback_event(channel: SlackChannel) -> None:
    msg = answered({"m": "msg_9", "c": "conv_3", "s": "C0001:500.1"})
    body = action_body(msg, "switchboard_feedback_negative", user="U0002")
    [event] = (await parse(channel, body, "application/x-www-form-urlencoded")).events
    assert event.kind == "feedback"
    assert event.meta == {"message_id": "msg_9", "conversation_id": "conv_3", "feedback": "negative"}
    assert event.scope == "C0001:500.1"
    assert event.identity == Identity("slack", TEAM, "U0002")
    assert event.reply["ts"] == "500.2"


async def test_retry_button_becomes_a_retry_event_in_the_same_thread(channel: SlackChannel) -> None:
    msg = answered({"m": "msg_9", "c": "conv_3", "s": "C0001:500.1"})
    body = action_body(msg, "switchboard_retry")
    [event] = (await parse(channel, body, "application/x-www-form-urlencoded")).events
    assert event.kind == "retry" and event.meta["message_id"] == "msg_9"
    assert event.reply["channel"] == "C0001" and event.reply["thread_ts"] == "500.1"


async def test_buttons_that_are_not_ours_are_ignored(channel: SlackChannel) -> None:
    msg = answered({"something": "else"})
    body = action_body(msg, "switchboard_retry")
    assert (await parse(channel, body, "application/x-www-form-urlencoded")).events == []


async def test_malformed_interactivity_payload_is_400(channel: SlackChannel) -> None:
    with pytest.raises(WebhookRejected) as info:
        await parse(channel, b"payload=%7Bnot-json", "application/x-www-form-urlencoded")
    assert info.value.status == 400


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "actions": "nope", "user": "U1"},
        {"type": "block_actions", "actions": [1, None], "container": []},
        {"type": "view_submission", "view": {}},
    ],
)
async def test_odd_interactivity_payloads_are_acknowledged_and_ignored(
    channel: SlackChannel, payload: dict[str, Any]
) -> None:
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    assert (await parse(channel, body, "application/x-www-form-urlencoded")).events == []
