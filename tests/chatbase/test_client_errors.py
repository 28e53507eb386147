"""The Chatbase client's failure handling: error classes, retries, broken and stalled streams."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest
from aiohttp import web

from adapters.chatbase import ChatbaseClient
from adapters.chatbase.documents import chat_events
from adapters.chatbase.errors import error_class, retry_after_seconds
from adapters.emulator import Emulator
from gateway.agent import AgentEvent, ToolCall
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
from tests.chatbase.support import API_KEY, STREAMS, collect, finish_of, make_client, raw_server, text_of

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
