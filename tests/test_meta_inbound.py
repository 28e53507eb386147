"""Messenger/Instagram without a gateway: signature, handshake, batched parsing, Send API errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from channels.meta import InstagramChannel, MessengerChannel, MetaChannel
from channels.meta.events import events_from_payload, feedback_payload
from channels.meta.graph import OutsideMessagingWindow
from gateway.channel import Answer, InboundRequest, Progress
from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited, ConfigError, WebhookRejected
from gateway.events import Identity, InboundEvent
from switchboard.testing import StubServices
from tests.fakes.meta import (
    APP_SECRET,
    PAGE_ID,
    PSID,
    VERIFY_TOKEN,
    FakeGraph,
    payload,
    postback_item,
    receipt_items,
    signature,
    text_item,
)


def config(graph: FakeGraph, type_: str = "messenger") -> dict[str, Any]:
    return {"type": type_, "page_access_token": graph.token, "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN, "api_base": graph.api_base}


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as fake:
        yield fake


@pytest.fixture
async def messenger(graph: FakeGraph) -> AsyncIterator[MetaChannel]:
    async with aiohttp.ClientSession() as http:
        chan = MessengerChannel.from_config("fb", config(graph), StubServices(http))  # type: ignore[arg-type]
        assert isinstance(chan, MessengerChannel)
        yield chan


def request(body: bytes, sig: str | None) -> InboundRequest:
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["X-Hub-Signature-256"] = sig
    return InboundRequest("POST", "/webhooks/fb", {}, CIMultiDictProxy(CIMultiDict(headers)), body,
                          "http://gw/webhooks/fb")


async def parse(chan: MetaChannel, body: bytes) -> list[InboundEvent]:
    req = request(body, signature(body))
    await chan.verify(req)
    return (await chan.parse(req)).events


def event(text: str = "hi", **reply: Any) -> InboundEvent:
    return InboundEvent("fb", "m_x", Identity("messenger", PAGE_ID, PSID), PSID, text,
                        reply={"recipient": PSID, **reply})


# -- signature and handshake -----------------------------------------------------------------------
async def test_a_correct_signature_passes(messenger: MetaChannel) -> None:
    body = payload([text_item("hi")])
    await messenger.verify(request(body, signature(body)))


@pytest.mark.parametrize("kind", ["wrong-secret", "tampered", "missing", "sha1", "garbage"])
async def test_bad_signatures_are_403(messenger: MetaChannel, kind: str) -> None:
    body = payload([text_item("hi")])
    sig = {
        "wrong-secret": signature(body, "not-the-secret"),
        "tampered": signature(payload([text_item("give me a refund")])),
        "missing": None,
        "sha1": "sha1=" + signature(body)[7:47],
        "garbage": "sha256=zz",
    }[kind]
    with pytest.raises(WebhookRejected) as info:
        await messenger.verify(request(body, sig))
    assert info.value.status == 403


async def test_the_handshake_echoes_the_challenge(messenger: MetaChannel) -> None:
    req = make_mocked_request(
        "GET", f"/webhooks/fb?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    )
    resp = await messenger.handle_verification(req)
    assert resp.status == 200 and resp.text == "1158201444" and resp.content_type == "text/plain"


@pytest.mark.parametrize(
    "query",
    ["hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1",
     f"hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1",
     "hub.challenge=1"],
)
async def test_a_bad_handshake_is_403(messenger: MetaChannel, query: str) -> None:
    with pytest.raises(WebhookRejected) as info:
        await messenger.handle_verification(make_mocked_request("GET", f"/webhooks/fb?{query}"))
    assert info.value.status == 403


def test_the_webhook_serves_get_and_post(messenger: MetaChannel) -> None:
    assert {(r.method, r.path) for r in messenger.routes()} == {("GET", "/webhooks/fb"), ("POST", "/webhooks/fb")}


# -- parsing ---------------------------------------------------------------------------------------
async def test_batched_entries_each_item_handled_oldest_first(messenger: MetaChannel) -> None:
    body = payload(
        [text_item("second", sender="u2", mid="m.2", timestamp=2000), text_item("echo of us", echo=True),
         *receipt_items()],
        [text_item("first", sender="u1", mid="m.1", timestamp=1000),
         text_item("third", sender="u1", mid="m.3", timestamp=3000)],
    )
    found = await parse(messenger, body)
    assert [(e.key, e.text, e.scope) for e in found] == [("m.1", "first", "u1"), ("m.2", "second", "u2"),
                                                         ("m.3", "third", "u1")]
    assert found[0].identity == Identity("messenger", PAGE_ID, "u1")
    assert found[0].reply == {"recipient": "u1"}


async def test_echoes_and_receipts_alone_produce_nothing(messenger: MetaChannel) -> None:
    assert await parse(messenger, payload([text_item("we said this", echo=True), *receipt_items()])) == []


async def test_quick_replies_and_postbacks_arrive_as_text(messenger: MetaChannel) -> None:
    body = payload([
        text_item("Opening hours", quick_reply="What are your opening hours?", mid="m.q", timestamp=1),
        postback_item("GET_STARTED", "Get Started", mid="m.p", timestamp=2),
        postback_item("Tell me about pricing", "Pricing", timestamp=3),
    ])
    found = await parse(messenger, body)
    assert [e.text for e in found] == ["What are your opening hours?", "Get Started", "Tell me about pricing"]
    assert found[1].key == "m.p" and found[2].key.startswith("postback:")


async def test_a_postback_without_mid_has_a_stable_key(messenger: MetaChannel) -> None:
    item = postback_item("MENU", "Menu", timestamp=1234)
    [a] = await parse(messenger, payload([item]))
    [b] = await parse(messenger, payload([item]))
    [c] = await parse(messenger, payload([postback_item("MENU", "Menu", timestamp=1235)]))
    assert a.key == b.key != c.key


async def test_a_feedback_quick_reply_is_a_feedback_event(messenger: MetaChannel) -> None:
    body = payload([text_item("👎", quick_reply=feedback_payload("-", "msg:77", "conv/1"), mid="m.f")])
    [found] = await parse(messenger, body)
    assert found.kind == "feedback" and found.key == "m.f"
    assert found.meta == {"message_id": "msg:77", "feedback": "negative", "conversation_id": "conv/1"}
    [bare] = await parse(messenger, payload([text_item("👍", quick_reply=feedback_payload("+", "m2"))]))
    assert bare.meta == {"message_id": "m2", "feedback": "positive"}


async def test_other_objects_are_acknowledged_and_ignored(messenger: MetaChannel) -> None:
    body = payload([text_item("hi")], obj="instagram")
    req = request(body, signature(body))
    result = await messenger.parse(req)
    assert result.status == 200 and result.events == []


@pytest.mark.parametrize("body", [b"{oops", b"[1, 2]"])
async def test_malformed_bodies_are_400(messenger: MetaChannel, body: bytes) -> None:
    with pytest.raises(WebhookRejected) as info:
        await messenger.parse(request(body, signature(body)))
    assert info.value.status == 400


async def test_odd_shapes_do_not_crash(messenger: MetaChannel) -> None:
    body = json.dumps({"object": "page", "entry": [None, {"messaging": "x"}, {"messaging": [1, {}]},
                                                    {"id": "p", "messaging": [{"sender": {"id": "u"},
                                                                               "message": {"text": "no mid"}}]}]})
    assert await parse(messenger, body.encode()) == []


_odd = (st.none() | st.booleans() | st.integers() | st.text(max_size=3) | st.lists(st.integers(), max_size=2)
        | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
# Mostly well-formed envelopes with odd values where a careless parser would trip.
_message = st.fixed_dictionaries({
    "mid": _odd | st.text(min_size=1), "text": _odd | st.text(min_size=1),
    "quick_reply": _odd | st.fixed_dictionaries({"payload": _odd | st.just("SB_FEEDBACK:+:m")}),
}, optional={"is_echo": st.booleans()})
_postback = st.fixed_dictionaries({"mid": _odd, "payload": _odd | st.just("GET_STARTED"), "title": _odd})
_item = st.fixed_dictionaries(
    {"sender": st.just({"id": "u1"}), "recipient": st.just({"id": "p1"}), "timestamp": _odd},
    optional={"message": _message, "postback": _postback | _odd},
) | st.fixed_dictionaries({"sender": _odd, "recipient": _odd, "message": _message | _odd})
_entries = (
    st.lists(_item, min_size=1, max_size=3).map(lambda items: [{"id": "p1", "messaging": items}])
    | st.lists(st.fixed_dictionaries({"id": _odd, "messaging": st.lists(_item | _odd, max_size=2) | _odd})
               | _odd, max_size=2)
    | _odd
)


@given(entries=_entries)
@settings(max_examples=300, deadline=None)
def test_no_payload_shape_crashes_the_parser(entries: Any) -> None:
    for event in events_from_payload({"object": "page", "entry": entries}, channel="fb", channel_type="messenger",
                                     link=lambda ref: ref):
        assert event.key and event.scope and (event.text or event.kind == "feedback")


async def test_instagram_reads_instagram_objects(graph: FakeGraph) -> None:
    async with aiohttp.ClientSession() as http:
        chan = InstagramChannel.from_config("ig", config(graph, "instagram"), StubServices(http))  # type: ignore[arg-type]
        assert isinstance(chan, InstagramChannel)
        [found] = await parse(chan, payload([text_item("hi from ig", sender="igsid1", page="17841400")],
                                            obj="instagram"))
        assert found.identity == Identity("instagram", "17841400", "igsid1")


# -- sending ---------------------------------------------------------------------------------------
async def test_an_answer_is_split_at_2000_with_quick_replies_on_the_last_part(
    messenger: MetaChannel, graph: FakeGraph
) -> None:
    sentence = "This sentence is part of a long answer about shipping times. "
    text = sentence * 80  # about 4,900 characters
    progress = Progress()
    reply = messenger.open_reply(event(), progress)
    await reply.start()
    await reply.finish(Answer(text, message_id="msg_9"))
    sent = [b for b in graph.sent() if "message" in b]
    assert len(sent) == 3 and progress.data["parts_sent"] == 3
    assert all(len(b["message"]["text"]) <= 2000 and b["message"]["text"].endswith(".") for b in sent)
    assert " ".join(b["message"]["text"] for b in sent) == text.strip()
    assert all(b["messaging_type"] == "RESPONSE" for b in sent)
    assert "quick_replies" not in sent[0]["message"]
    assert [q["payload"] for q in sent[-1]["message"]["quick_replies"]] == [
        feedback_payload("+", "msg_9"), feedback_payload("-", "msg_9")]
    assert [q["title"] for q in sent[-1]["message"]["quick_replies"]] == ["👍", "👎"]
    assert graph.actions_to(PSID) == ["typing_on"]
    assert graph.calls[0].body.get("sender_action") == "typing_on"  # before the text


async def test_a_resumed_reply_sends_only_the_missing_parts(messenger: MetaChannel, graph: FakeGraph) -> None:
    text = "One sentence here. " * 250
    await messenger.open_reply(event(), Progress({"parts_sent": 2})).finish(Answer(text))
    assert len(graph.texts_to(PSID)) == 1


async def test_markdown_goes_out_as_plain_text(messenger: MetaChannel, graph: FakeGraph) -> None:
    await messenger.open_reply(event(), Progress()).finish(Answer("**Bold** and [docs](https://x.io)"))
    [text] = graph.texts_to(PSID)
    assert "**" not in text and "https://x.io" in text


@pytest.mark.parametrize(
    ("status", "code", "subcode", "headers", "error", "retry_after"),
    [
        (429, 4, None, {"Retry-After": "3"}, ChannelRateLimited, 3.0),
        (400, 613, None, {}, ChannelRateLimited, 20.0),
        (400, 32, None, {}, ChannelRateLimited, 20.0),
        (400, 10, 2018278, {}, OutsideMessagingWindow, None),
        (400, 551, None, {}, OutsideMessagingWindow, None),
        (500, 1, None, {}, ChannelError, None),
        (503, 2, None, {}, ChannelError, None),
        (400, 100, None, {}, ChannelPermanentError, None),
    ],
)
async def test_graph_errors_are_mapped(
    messenger: MetaChannel, graph: FakeGraph, status: int, code: int, subcode: int | None,
    headers: dict[str, str], error: type[Exception], retry_after: float | None,
) -> None:
    graph.fail_next(status, code, subcode=subcode, headers=headers)
    with pytest.raises(error) as info:
        await messenger.send_text(event(), "hello")
    assert type(info.value) is error
    if retry_after is not None:
        assert isinstance(info.value, ChannelRateLimited) and info.value.retry_after == retry_after


async def test_the_24_hour_window_is_permanent(messenger: MetaChannel, graph: FakeGraph) -> None:
    graph.fail_next(400, 10, subcode=2018278, message="(#10) This message is sent outside of allowed window.")
    with pytest.raises(ChannelPermanentError, match="24-hour"):
        await messenger.send_text(event(), "too late")


async def test_an_unreachable_graph_is_retryable_and_keeps_the_token_out(graph: FakeGraph) -> None:
    async with aiohttp.ClientSession() as http:
        raw = {**config(graph), "api_base": "http://127.0.0.1:9/v21.0"}
        chan = MessengerChannel.from_config("fb", raw, StubServices(http))  # type: ignore[arg-type]
        with pytest.raises(ChannelError) as info:
            await chan.send_text(event(), "hello")  # type: ignore[attr-defined]
        assert not isinstance(info.value, ChannelPermanentError)
        assert graph.token not in str(info.value)


async def test_instagram_parts_stay_under_1000_bytes() -> None:
    settings = InstagramChannel.validate("ig", {"type": "instagram", "page_access_token": "t", "app_secret": "s",
                                                "verify_token": "v"})
    chan = InstagramChannel("ig", settings, None)  # type: ignore[arg-type]
    text = "Grüße aus Köln, wir freuen uns 😀. " * 100
    parts = chan.split(text)
    assert len(parts) > 3 and all(len(p.encode()) <= 1000 for p in parts)
    assert " ".join(parts) == text.strip()


@pytest.mark.parametrize("missing", ["page_access_token", "app_secret", "verify_token"])
def test_settings_need_their_secrets(missing: str) -> None:
    raw = {"type": "messenger", "page_access_token": "t", "app_secret": "s", "verify_token": "v"}
    del raw[missing]
    with pytest.raises(ConfigError, match=missing):
        MessengerChannel.validate("fb", raw)


def test_secrets_stay_out_of_repr_and_describe() -> None:
    settings = MessengerChannel.validate("fb", {"type": "messenger", "page_access_token": "TOKEN123",
                                                "app_secret": "SECRET456", "verify_token": "VERIFY789"})
    chan = MessengerChannel("fb", settings, None)  # type: ignore[arg-type]
    shown = repr(settings) + chan.describe() + str(chan.webhook_urls("https://bot.example.com"))
    assert not any(s in shown for s in ("TOKEN123", "SECRET456", "VERIFY789"))
    assert chan.webhook_urls("https://bot.example.com")[0][1] == "https://bot.example.com/webhooks/fb"
