"""The Chatbase client against the emulator on a real port (and a few hand-made bad servers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.chatbase import FEEDBACK_FIELD, ChatbaseClient
from adapters.chatbase.documents import chat_events
from adapters.chatbase.errors import error_class, retry_after_seconds
from adapters.emulator import Emulator
from gateway.agent import AgentEvent, Finish, MessageStart, TextDelta, ToolCall
from gateway.config import AgentSettings
from gateway.errors import (
    AgentAuthError,
    AgentError,
    AgentNotFound,
    AgentRateLimited,
    AgentUnavailable,
    BadAgentRequest,
    ConversationEnded,
    CreditsExhausted,
    StreamBroken,
)

API_KEY = "sk-test-do-not-log-me"
STREAMS = Path(__file__).parent / "data" / "streams"


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


@pytest.fixture
async def base_url(emulator: Emulator) -> AsyncIterator[str]:
    async with emulator.serve() as url:
        yield url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_client(
    session: aiohttp.ClientSession,
    url: str,
    *,
    api_key: str = API_KEY,
    agent_id: str = "agent-1",
    timeout: float = 5.0,
    max_attempts: int = 3,
    **kw: Any,
) -> ChatbaseClient:
    settings = AgentSettings(
        api_base=url, api_key=api_key, agent_id=agent_id, timeout=timeout, max_attempts=max_attempts
    )
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_cap", 0.05)
    return ChatbaseClient(session, settings, **kw)


@pytest.fixture
def client(session: aiohttp.ClientSession, base_url: str) -> ChatbaseClient:
    return make_client(session, base_url)


async def collect(stream: AsyncIterator[AgentEvent]) -> list[AgentEvent]:
    return [event async for event in stream]


def text_of(events: list[AgentEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def finish_of(events: list[AgentEvent]) -> Finish:
    assert isinstance(events[-1], Finish), events[-1]
    return events[-1]


@contextlib.asynccontextmanager
async def raw_server(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """A one-handler server for failures the emulator does not produce."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("/api/v2"))
    finally:
        await server.close()


# -- conversations ---------------------------------------------------------------------------------


async def test_streamed_chat_continues_the_same_conversation(client: ChatbaseClient, emulator: Emulator) -> None:
    first = await collect(client.chat("hello", user_id="web.demo.1"))
    assert isinstance(first[0], MessageStart)
    assert text_of(first) == 'You said: "hello". This is message 1 of this conversation.'
    done = finish_of(first)
    assert done.reason == "stop" and done.user_id == "web.demo.1" and done.credits == 1
    assert done.message_id == first[0].message_id and done.user_message_id

    second = await collect(client.chat("again", conversation_id=done.conversation_id, user_id="ignored"))
    assert text_of(second) == 'You said: "again". This is message 2 of this conversation.'
    assert finish_of(second).conversation_id == done.conversation_id
    # userId only tags new conversations, so it is not sent with a conversationId.
    assert emulator.requests[-1].json == {
        "stream": True,
        "message": "again",
        "conversationId": done.conversation_id,
    }


async def test_text_arrives_as_several_deltas(client: ChatbaseClient) -> None:
    events = await collect(client.chat("long 400"))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 50 and len(text_of(events)) >= 400


async def test_non_streaming_chat_gives_the_same_events(client: ChatbaseClient, emulator: Emulator) -> None:
    events = await client.chat_once("hi", user_id="u1")
    assert emulator.requests[-1].json == {"stream": False, "message": "hi", "userId": "u1"}
    assert isinstance(events[0], MessageStart)
    assert text_of(events) == 'You said: "hi". This is message 1 of this conversation.'
    done = finish_of(events)
    assert done.reason == "stop" and done.conversation_id and done.user_id == "u1"
    assert done.message_id == events[0].message_id


async def test_tool_round_trip(client: ChatbaseClient) -> None:
    events = await collect(client.chat("Where is my order #77?"))
    assert text_of(events) == "Let me check order 77."
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.tool_name, c.input) for c in calls] == [("lookupOrder", {"orderId": "77"})]
    done = finish_of(events)
    assert done.reason == "tool-calls" and done.conversation_id

    await client.submit_tool_result(done.conversation_id, calls[0].tool_call_id, {"status": "shipped", "eta": 2})
    after = await collect(client.chat(None, conversation_id=done.conversation_id))
    assert text_of(after) == 'Here is what I found for order 77: {"eta": 2, "status": "shipped"}'
    assert finish_of(after).reason == "stop"

    with pytest.raises(AgentNotFound) as info:
        await client.submit_tool_result(done.conversation_id, calls[0].tool_call_id, {})
    assert info.value.code == "RESOURCE_TOOL_CALL_NOT_FOUND"


async def test_non_streaming_tool_call(client: ChatbaseClient) -> None:
    events = await client.chat_once('call tool getWeather {"city": "Oslo"}')
    assert next(e for e in events if isinstance(e, ToolCall)).input == {"city": "Oslo"}
    assert finish_of(events).reason == "tool-calls"


async def test_retry_regenerates_the_answer(client: ChatbaseClient) -> None:
    first = finish_of(await collect(client.chat("one")))
    conv = first.conversation_id
    assert conv and first.message_id
    again = await collect(client.retry(conv, first.message_id))
    assert text_of(again) == 'You said: "one". This is message 1 of this conversation.'
    assert finish_of(again).message_id != first.message_id
    page = await client.list_messages(conv)
    assert [m["role"] for m in page.items] == ["user", "assistant"]
    assert page.items[1]["id"] == finish_of(again).message_id


async def test_feedback_is_set_and_cleared(client: ChatbaseClient, emulator: Emulator) -> None:
    done = finish_of(await collect(client.chat("rate me")))
    assert done.conversation_id and done.message_id and done.user_message_id
    await client.set_feedback(done.conversation_id, done.message_id, "positive")
    assert emulator.requests[-1].method == "PATCH"
    assert emulator.requests[-1].json == {FEEDBACK_FIELD: "positive"}
    assert (await client.list_messages(done.conversation_id)).items[-1]["feedback"] == "positive"
    await client.set_feedback(done.conversation_id, done.message_id, None)
    assert (await client.list_messages(done.conversation_id)).items[-1]["feedback"] is None

    with pytest.raises(BadAgentRequest) as info:
        await client.set_feedback(done.conversation_id, done.user_message_id, "negative")
    assert info.value.code == "RESOURCE_MESSAGE_NOT_ASSISTANT"


async def test_messages_paginate_backwards_across_pages(client: ChatbaseClient) -> None:
    conv = None
    for i in range(4):
        conv = finish_of(await collect(client.chat(f"m{i}", conversation_id=conv))).conversation_id
    assert conv
    pages = []
    cursor = None
    while True:
        page = await client.list_messages(conv, cursor=cursor, limit=3)
        pages.append(page)
        assert page.total == 8
        if page.cursor is None:
            assert not page.has_more
            break
        assert page.has_more
        cursor = page.cursor
    assert [len(p.items) for p in pages] == [3, 3, 2]
    newest_last = [m for p in reversed(pages) for m in p.items]
    user_texts = [m["parts"][0]["text"] for m in newest_last if m["role"] == "user"]
    assert user_texts == ["m0", "m1", "m2", "m3"]


async def test_conversation_listings(client: ChatbaseClient) -> None:
    ids = []
    for i in range(3):
        ids.append(finish_of(await collect(client.chat(f"c{i}", user_id="sms.acct.15551234567"))).conversation_id)
    await collect(client.chat("other user", user_id="someone.else"))

    first = await client.list_conversations(limit=2)
    second = await client.list_conversations(cursor=first.cursor, limit=2)
    assert first.total == 4 and first.has_more and not second.has_more and second.cursor is None
    assert len(first.items) + len(second.items) == 4

    mine = await client.list_user_conversations("sms.acct.15551234567", limit=10)
    assert sorted(c["id"] for c in mine.items) == sorted(ids)
    assert all(c["userId"] == "sms.acct.15551234567" for c in mine.items)

    detail = await client.get_conversation(ids[0])
    assert detail.conversation.id == ids[0] and detail.conversation.user_id == "sms.acct.15551234567"
    assert detail.conversation.created_at and detail.conversation.created_at.endswith("Z")
    assert [m["role"] for m in detail.messages.items] == ["user", "assistant"]


async def test_legacy_event_generation(session: aiohttp.ClientSession) -> None:
    emulator = Emulator(legacy_events=True)
    async with emulator.serve() as url:
        client = make_client(session, url)
        events = await collect(client.chat("order 5"))
        assert text_of(events) == "Let me check order 5."
        done = finish_of(events)
        assert done.reason == "tool-calls" and done.conversation_id and done.credits == 1
        once = await client.chat_once("hello", conversation_id=done.conversation_id)
        assert finish_of(once).conversation_id == done.conversation_id
        assert text_of(once) == 'You said: "hello". This is message 2 of this conversation.'


async def test_health(client: ChatbaseClient, session: aiohttp.ClientSession, emulator: Emulator) -> None:
    assert await client.health()
    emulator.faults.fail_next(503)
    assert not await client.health()
    closed = make_client(session, "http://127.0.0.1:9/api/v2", timeout=1)
    assert not await closed.health()


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (401, "AUTH_INVALID_API_KEY", AgentAuthError),
        (403, "SUBSCRIPTION_PLAN_REQUIRED", AgentAuthError),
        (403, "CHAT_MODEL_NOT_ALLOWED", AgentAuthError),
        (402, "CHAT_CREDITS_EXHAUSTED", CreditsExhausted),
        (403, "CHAT_AGENT_CREDITS_EXHAUSTED", CreditsExhausted),  # the code wins over the status
        (400, "CHAT_CONVERSATION_NOT_ONGOING", ConversationEnded),
        (409, "CHAT_CONVERSATION_NOT_ONGOING", ConversationEnded),
        (404, "RESOURCE_NOT_FOUND", AgentNotFound),
        (409, "CHAT_CONVERSATION_MISMATCH", AgentNotFound),
        (400, "VALIDATION_INVALID_BODY", BadAgentRequest),
    ],
)
async def test_error_codes_map_to_classes_and_are_not_retried(
    client: ChatbaseClient, emulator: Emulator, status: int, code: str, expected: type[AgentError]
) -> None:
    emulator.faults.fail_next(status, code=code)
    with pytest.raises(expected) as info:
        await collect(client.chat("hi"))
    err = info.value
    assert type(err) is expected
    assert (err.code, err.status) == (code, status)
    assert err.request_id and err.request_id.startswith("req_")
    assert isinstance(err.__cause__, aiohttp.ClientResponseError)
    assert len(emulator.requests) == 1


async def test_real_emulator_errors(client: ChatbaseClient, session: aiohttp.ClientSession, base_url: str) -> None:
    with pytest.raises(AgentNotFound) as missing:
        await collect(make_client(session, base_url, agent_id="missing-agent").chat("hi"))
    assert missing.value.code == "AGENT_NOT_FOUND"

    with pytest.raises(AgentAuthError) as auth:
        await make_client(session, base_url, api_key="").chat_once("hi")
    assert auth.value.code == "AUTH_MISSING_API_KEY" and auth.value.status == 401

    with pytest.raises(AgentNotFound):
        await collect(client.chat("hi", conversation_id="no-such-conversation"))

    with pytest.raises(BadAgentRequest) as bad:
        await collect(client.chat("hi", user_id="not valid!"))
    assert bad.value.details == {"userId": "At most 128 characters of letters, digits, '.', '_' or '-'"}


async def test_ended_conversation_raises_conversation_ended(client: ChatbaseClient, emulator: Emulator) -> None:
    conv = finish_of(await collect(client.chat("hi"))).conversation_id
    assert conv
    emulator.end_conversation(conv)
    with pytest.raises(ConversationEnded):
        await collect(client.chat("still there?", conversation_id=conv))


async def test_429_waits_retry_after_then_succeeds(client: ChatbaseClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(429, retry_after=0.2)
    started = time.monotonic()
    events = await collect(client.chat("hi"))
    assert time.monotonic() - started >= 0.2
    assert finish_of(events).reason == "stop"
    assert len(emulator.requests) == 2


async def test_429_longer_than_the_bound_is_raised_at_once(
    session: aiohttp.ClientSession, base_url: str, emulator: Emulator
) -> None:
    client = make_client(session, base_url, max_retry_after=1.0)
    emulator.faults.fail_next(429, retry_after=30)
    started = time.monotonic()
    with pytest.raises(AgentRateLimited) as info:
        await client.chat_once("hi")
    assert info.value.retry_after == 30 and time.monotonic() - started < 1
    assert len(emulator.requests) == 1


async def test_429_on_every_attempt_is_raised(client: ChatbaseClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(429, count=5, retry_after=0.01)
    with pytest.raises(AgentRateLimited):
        await client.submit_tool_result("c", "t", {})
    assert len(emulator.requests) == 3


async def test_5xx_then_success(client: ChatbaseClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(503, count=2)
    events = await collect(client.chat("hi"))
    assert text_of(events).startswith("You said")
    assert len(emulator.requests) == 3


async def test_5xx_exhausted_raises_agent_unavailable(client: ChatbaseClient, emulator: Emulator) -> None:
    emulator.faults.fail_next(500, count=10)
    with pytest.raises(AgentUnavailable) as info:
        await client.list_conversations()
    assert info.value.code == "INTERNAL_SERVER_ERROR" and not isinstance(info.value, StreamBroken)
    assert len(emulator.requests) == 3


async def test_cut_stream_raises_stream_broken_with_partial_text(client: ChatbaseClient, emulator: Emulator) -> None:
    emulator.faults.cut_next_stream()
    received: list[AgentEvent] = []
    with pytest.raises(StreamBroken) as info:
        async for event in client.chat("long 300"):
            received.append(event)
    assert info.value.partial_text == text_of(received) != ""
    assert "This is sentence 1" in info.value.partial_text
    assert len(emulator.requests) == 1  # text had flowed: never retried


async def test_dropped_connection_mid_stream_raises_stream_broken(client: ChatbaseClient, emulator: Emulator) -> None:
    emulator.faults.cut_next_stream(abort=True)
    with pytest.raises(StreamBroken) as info:
        await collect(client.chat("long 300"))
    assert info.value.partial_text.startswith("This is sentence 1")
    assert isinstance(info.value.__cause__, aiohttp.ClientError)


async def test_stalled_stream_times_out_per_read(session: aiohttp.ClientSession) -> None:
    emulator = Emulator(token_delay=0.6)
    async with emulator.serve() as url:
        client = make_client(session, url, timeout=0.15)
        started = time.monotonic()
        with pytest.raises(StreamBroken) as info:
            await collect(client.chat("hi"))
        assert time.monotonic() - started < 0.5
        assert isinstance(info.value.__cause__, TimeoutError)
        assert len(emulator.requests) == 1  # "start" had been yielded: not retried


async def test_slow_first_byte_is_retried_then_unavailable(session: aiohttp.ClientSession) -> None:
    emulator = Emulator(latency=0.4)
    async with emulator.serve() as url:
        client = make_client(session, url, timeout=0.1, max_attempts=2)
        with pytest.raises(AgentUnavailable) as info:
            await collect(client.chat("hi"))
        assert not isinstance(info.value, StreamBroken)
        assert isinstance(info.value.__cause__, TimeoutError)
        assert len(emulator.requests) == 2


async def test_error_event_mid_stream(session: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write((STREAMS / "error_midway.sse").read_bytes())
        return resp

    async with raw_server(handler) as url:
        with pytest.raises(StreamBroken) as info:
            await collect(make_client(session, url).chat("hi"))
    assert info.value.code == "CHAT_STREAMING_ERROR" and info.value.partial_text == "Half an ans"


@pytest.mark.parametrize("ending", [b"", b"data: [DONE]\n\n"])
async def test_a_connection_left_open_after_the_end_loses_nothing(
    session: aiohttp.ClientSession, ending: bytes
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"type":"text-delta","delta":"All here."}\n\n')
        await resp.write(b'data: {"type":"finish","finishReason":"stop","messageMetadata":{"conversationId":"c"}}\n\n')
        await resp.write(ending)
        await asyncio.sleep(0.5)  # then the server hangs on to the connection
        return resp

    async with raw_server(handler) as url:
        started = time.monotonic()
        events = await collect(make_client(session, url, timeout=0.2).chat("hi"))
        elapsed = time.monotonic() - started
    assert text_of(events) == "All here." and finish_of(events).conversation_id == "c"
    assert elapsed < (0.15 if ending else 0.45)  # [DONE] ends it at once; otherwise the read timeout


async def test_proxy_html_502_is_unavailable_and_retried(session: aiohttp.ClientSession) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    async with raw_server(handler) as url:
        with pytest.raises(AgentUnavailable) as info:
            await make_client(session, url).chat_once("hi")
    assert info.value.status == 502 and info.value.code is None and calls == 3


async def test_stream_request_answered_with_json_still_works(session: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"data": {"id": "m1", "role": "assistant", "parts": [{"type": "text", "text": "Hi!"}],
                      "metadata": {"conversationId": "c1", "finishReason": "stop"}}}
        )  # fmt: skip

    async with raw_server(handler) as url:
        events = await collect(make_client(session, url).chat("hi"))
    assert text_of(events) == "Hi!" and finish_of(events).conversation_id == "c1"


async def test_closing_a_stream_early_releases_the_connection(client: ChatbaseClient) -> None:
    stream = client.chat("long 2000")
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert text_of(await collect(client.chat("next"))).startswith("You said")


async def test_api_key_is_never_logged(
    client: ChatbaseClient, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.faults.fail_next(500)
    emulator.faults.fail_next(401)
    with pytest.raises(AgentAuthError) as info:
        await collect(client.chat("hi"))
    assert API_KEY not in caplog.text and "retrying" in caplog.text
    assert API_KEY not in repr(client) and API_KEY not in str(info.value)


# -- pure pieces ------------------------------------------------------------------------------------


def test_json_answer_metadata_at_top_level_or_nested() -> None:
    top = {"data": {"id": "m", "role": "assistant", "parts": [{"type": "text", "text": "a"}],
                    "conversationId": "c", "userId": "u", "finishReason": "stop", "usage": {"credits": 2}}}  # fmt: skip
    nested = {"id": "m", "parts": [{"type": "text", "text": "a"}, {"type": "tool-call", "toolCallId": "t",
              "toolName": "x", "input": {"k": 1}}], "metadata": {"conversationId": "c", "userId": "u"}}  # fmt: skip
    a, b = chat_events(top), chat_events(nested)
    assert finish_of(a).conversation_id == finish_of(b).conversation_id == "c"
    assert finish_of(a).credits == 2 and finish_of(a).reason == "stop"
    assert finish_of(b).reason == "tool-calls"  # inferred from the tool call part
    assert ToolCall("t", "x", {"k": 1}) in b


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (None, 429, AgentRateLimited),
        (None, 503, AgentUnavailable),
        (None, 401, AgentAuthError),
        (None, 418, BadAgentRequest),
        ("AUTH_SOMETHING_NEW", 400, AgentAuthError),
        ("CHAT_SOME_CREDITS_THING", 400, CreditsExhausted),
        ("CHAT_STREAMING_ERROR", 500, StreamBroken),
    ],
)
def test_error_class_falls_back_to_code_family_then_status(
    code: str | None, status: int, expected: type[AgentError]
) -> None:
    assert error_class(code, status) is expected


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"Retry-After": "2"}) == 2
    assert retry_after_seconds({"Retry-After": "Thu, 01 Jan 1970 00:00:10 GMT"}, now=4) == 6
    assert retry_after_seconds({"X-RateLimit-Reset": "5000"}, now=2) == 3
    assert retry_after_seconds({}) == 1
