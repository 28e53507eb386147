"""Slack through a real gateway, the Chatbase emulator and a fake Slack Web API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from adapters.emulator.brain import MARKDOWN_SAMPLE, long_text
from gateway.markdown import to_mrkdwn
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes.slack import BOT_ID, BOT_USER, SECRET, TEAM, FakeMessage, FakeSlack
from tests.fakes.slack_inbound import action_body, event_body, mention, message, signed_headers

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@asynccontextmanager
async def gateway(slack: FakeSlack, **options: Any) -> AsyncIterator[tuple[GatewayUnderTest, aiohttp.ClientSession]]:
    config = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_base,
              "update_interval": 0.02, **options}
    async with running_gateway({"slack": config}) as gw, aiohttp.ClientSession() as http:
        yield gw, http


async def post(gw: GatewayUnderTest, http: aiohttp.ClientSession, body: bytes, *,
               content_type: str = "application/json", headers: dict[str, str] | None = None) -> tuple[int, str]:
    sent = {**signed_headers(body, content_type=content_type), **(headers or {})}
    async with http.post(f"{gw.url}/webhooks/slack", data=body, headers=sent) as response:
        return response.status, await response.text()


def chats(gw: GatewayUnderTest) -> list[dict[str, Any]]:
    """Chat requests the agent received (user messages, not tool continuations)."""
    return [r.json for r in gw.emulator.requests
            if r.path.endswith("/chat") and isinstance(r.json, dict) and r.json.get("message")]


def texts(slack: FakeSlack, channel: str, thread: str | None) -> list[str]:
    return [m.text for m in slack.thread(channel, thread)]


def last_answer(slack: FakeSlack, channel: str, thread: str | None) -> FakeMessage:
    return slack.thread(channel, thread)[-1]


async def test_url_verification_and_signatures(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "x"}).encode()
        status, text = await post(gw, http, body)
        assert status == 200 and json.loads(text) == {"challenge": "c-123"}
        forged = event_body(mention("hi"))
        status, _ = await post(gw, http, forged, headers=signed_headers(forged, secret="guess"))
        assert status == 401
        stale = event_body(mention("hi"), event_id="Ev2")
        status, _ = await post(gw, http, stale, headers=signed_headers(stale, timestamp=1_600_000_000))
        assert status == 401
        await gw.idle()
        assert chats(gw) == [] and slack.all_messages() == []


async def test_mention_is_answered_in_its_thread_and_follow_ups_continue(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        assert (await post(gw, http, event_body(mention("hello", ts="100.1"), event_id="Ev1")))[0] == 200
        await gw.idle()
        follow_up = message("and again", channel="C0001", channel_type="channel", thread_ts="100.1", ts="100.5")
        assert (await post(gw, http, event_body(follow_up, event_id="Ev2")))[0] == 200
        dm = message("in private", ts="200.1")
        assert (await post(gw, http, event_body(dm, event_id="Ev3")))[0] == 200
        await gw.idle()
    assert texts(slack, "C0001", "100.1") == [
        'You said: "hello". This is message 1 of this conversation.',
        'You said: "and again". This is message 2 of this conversation.',
    ]
    assert texts(slack, "D0001", None) == ['You said: "in private". This is message 1 of this conversation.']
    assert {c["userId"] for c in chats(gw) if "userId" in c} == {f"slack.{TEAM}.U0001"}


async def test_slow_agent_is_acknowledged_before_it_answers(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        gw.emulator.faults.latency = 0.5
        status, _ = await post(gw, http, event_body(mention("take your time", ts="300.1")))
        assert status == 200
        # Slack has its 200 while the agent has not answered yet: at most a placeholder is shown.
        assert not any("You said" in t for t in texts(slack, "C0001", "300.1"))
        await gw.idle()
    assert texts(slack, "C0001", "300.1") == ['You said: "take your time". This is message 1 of this conversation.']


async def test_retry_storm_gets_one_answer(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        gw.emulator.faults.latency = 0.3
        body = event_body(mention("just once", ts="400.1"), event_id="EvStorm")
        assert (await post(gw, http, body))[0] == 200
        retries = [post(gw, http, body, headers={"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"})
                   for n in (1, 2, 3)]
        assert [status for status, _ in await asyncio.gather(*retries)] == [200, 200, 200]
        await gw.idle()
    assert [c["message"] for c in chats(gw)] == ["just once"]
    assert texts(slack, "C0001", "400.1") == ['You said: "just once". This is message 1 of this conversation.']


async def test_bots_never_loop(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await post(gw, http, event_body(mention("start", ts="500.1"), event_id="Ev1"))
        await gw.idle()
        thread = {"channel": "C0001", "channel_type": "channel", "thread_ts": "500.1"}
        [answer] = slack.thread("C0001", "500.1")
        echoes = [
            # Slack echoes our own answer into the thread we are answering...
            message(answer.text, user=BOT_USER, bot_id=BOT_ID, ts=answer.ts, **thread),
            # ...another bot replies to it, mentions us, or edits its message...
            message(f"<@{BOT_USER}> {answer.text}", user="UOTHERBOT", bot_id="B0THER", ts="500.7", **thread),
            {**mention("you there?", ts="500.8", thread_ts="500.1"), "bot_id": "B0THER", "user": "UOTHERBOT"},
            message("bot says", subtype="bot_message", ts="500.9", **thread),
            message("edited", subtype="message_changed", ts="501.0", **thread),
        ]
        for n, event in enumerate(echoes):
            assert (await post(gw, http, event_body(event, event_id=f"EvBot{n}")))[0] == 200
        await gw.idle()
    assert [c["message"] for c in chats(gw)] == ["start"]
    assert len(slack.thread("C0001", "500.1")) == 1


async def test_slack_429_mid_stream_is_honoured_and_the_answer_completes(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        gw.emulator.faults.token_delay = 0.005
        slack.fail_next("chat.update", retry_after=1)
        await post(gw, http, event_body(mention("long 600", ts="600.1")))
        await gw.idle()
    limited, *later = slack.calls_to("chat.update")
    assert limited.status == 429 and later
    assert all(call.at - limited.at >= 1.0 for call in later)
    assert texts(slack, "C0001", "600.1") == [to_mrkdwn(long_text(600))]


async def test_a_6000_character_answer_continues_in_the_thread(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await post(gw, http, event_body(mention("long 6000", ts="700.1")))
        await gw.idle()
    messages = slack.thread("C0001", "700.1")
    assert len(messages) == 2
    assert all(len(m.text) <= 3900 for m in messages)
    assert " ".join(m.text for m in messages).split() == to_mrkdwn(long_text(6000)).split()
    assert [bool(m.blocks) for m in messages] == [False, True]  # buttons under the last part only


async def test_markdown_arrives_as_mrkdwn(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await post(gw, http, event_body(mention("show me markdown", ts="800.1")))
        await gw.idle()
    assert texts(slack, "C0001", "800.1") == [to_mrkdwn(MARKDOWN_SAMPLE)]


async def test_feedback_buttons_reach_the_agent_and_show_the_choice(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await post(gw, http, event_body(mention("rate me", ts="900.1")))
        await gw.idle()
        answer = last_answer(slack, "C0001", "900.1")
        message_id = json.loads(answer.blocks[-1]["elements"][0]["value"])["m"]
        status, _ = await post(gw, http, action_body(answer, "switchboard_feedback_negative", user="U0002"),
                               content_type=FORM)
        assert status == 200
        await gw.idle()
    [feedback] = [r for r in gw.emulator.requests if r.method == "PATCH" and r.path.endswith("/feedback")]
    assert feedback.json == {"feedback": "negative"}
    assert f"/messages/{message_id}/" in feedback.path
    shown = last_answer(slack, "C0001", "900.1")
    assert any(b.get("type") == "context" and "👎" in b["elements"][0]["text"] for b in shown.blocks)


async def test_retry_button_regenerates_the_answer_in_the_thread(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await post(gw, http, event_body(mention("try me", ts="950.1")))
        await gw.idle()
        answer = last_answer(slack, "C0001", "950.1")
        status, _ = await post(gw, http, action_body(answer, "switchboard_retry"), content_type=FORM)
        assert status == 200
        await gw.idle()
    [retry] = [r for r in gw.emulator.requests if r.path.endswith("/retry")]
    assert retry.json["messageId"] == json.loads(answer.blocks[-1]["elements"][0]["value"])["m"]
    assert texts(slack, "C0001", "950.1") == [
        'You said: "try me". This is message 1 of this conversation.',
        'You said: "try me". This is message 1 of this conversation.',
    ]
    assert len(chats(gw)) == 1  # regenerated through the retry endpoint, not asked again


async def test_native_streaming_through_the_gateway(slack: FakeSlack) -> None:
    async with gateway(slack, streaming="native") as (gw, http):
        gw.emulator.faults.token_delay = 0.002
        await post(gw, http, event_body(mention("stream it", ts="990.1")))
        await gw.idle()
    [answer] = slack.thread("C0001", "990.1")
    assert answer.text == 'You said: "stream it". This is message 1 of this conversation.'
    assert not answer.streaming and answer.blocks
    assert slack.calls_to("chat.appendStream") and not slack.calls_to("chat.postMessage")


def test_check_shows_where_slack_must_send_events() -> None:
    from channels.slack import SlackChannel

    settings = SlackChannel.validate("team", {"type": "slack", "bot_token": "xoxb-secret", "signing_secret": "s3"})
    channel = SlackChannel("team", settings, None)  # type: ignore[arg-type]
    assert channel.webhook_urls("https://bot.example.com/") == [
        ("Event Subscriptions request URL", "https://bot.example.com/webhooks/team"),
        ("Interactivity request URL", "https://bot.example.com/webhooks/team"),
    ]
    assert "xoxb-secret" not in channel.describe() and "s3" not in channel.describe()
    assert not channel.polls


async def test_a_turn_stopped_by_a_store_outage_leaves_no_task_and_resumes_without_reposting(
    slack: FakeSlack,
) -> None:
    from gateway.errors import StoreUnavailable

    async with gateway(slack) as (gw, http):
        gw.emulator.faults.token_delay = 0.005
        store = gw.services.store
        save = store.journal_progress
        outages = []

        async def failing_once(key: str, progress: dict[str, Any], attempts: int) -> None:
            if "answer" in progress and not outages:  # the store goes away as the answer is saved
                outages.append(key)
                raise StoreUnavailable("connection refused")
            await save(key, progress, attempts)

        store.journal_progress = failing_once  # type: ignore[method-assign]
        await post(gw, http, event_body(mention("long 300", ts="700.1")))
        await gw.idle()
        assert outages and len(slack.calls_to("chat.update")) >= 1  # it was streaming when it stopped
        assert reply_tasks() == []
        await gw.dispatcher.sweep()  # the store is back: the sweeper resumes the turn
        await gw.idle()
    assert texts(slack, "C0001", "700.1") == [to_mrkdwn(long_text(300))]
    assert len(slack.calls_to("chat.postMessage")) == 1  # the placeholder, edited into the answer


def reply_tasks() -> list[str]:
    """Tasks still running code of a reply (the channel's or the core's editing reply)."""
    def module(task: asyncio.Task[Any]) -> str:
        frame = getattr(task.get_coro(), "cr_frame", None)
        return str(frame.f_globals.get("__name__", "")) if frame is not None else ""

    return [t.get_name() for t in asyncio.all_tasks()
            if not t.done() and module(t).startswith(("channels.slack", "gateway.editing"))]
