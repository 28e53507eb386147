"""The web chat HTTP surface against a scripted turn runner: stream format, refusals, page.

``read_ui_stream`` is the strict parser of the UI message stream the other web tests share.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.web import WebChannel
from gateway.channel import Answer, Reply
from gateway.config import parse_settings
from gateway.events import Identity, InboundEvent
from gateway.metrics import Metrics

PUBLIC = "https://bot.example.com"
Script = Callable[[InboundEvent, Reply], Awaitable[Answer | None]]


def read_ui_stream(raw: bytes) -> list[dict[str, Any]]:
    """Parse a UI message stream strictly and check the event grammar; returns the JSON events.

    Every event is exactly ``data: <json>`` and a blank line; ``start`` comes first, each text
    part is ``text-start``, ``text-delta``s with its id, ``text-end``; then one ``finish`` and
    ``data: [DONE]`` as the very last thing.
    """
    text = raw.decode("utf-8")
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    blocks = text[: -len("data: [DONE]\n\n")].split("\n\n")
    assert blocks[-1] == ""
    events = []
    for block in blocks[:-1]:
        assert block.startswith("data: ") and "\n" not in block, block
        events.append(json.loads(block[len("data: "):]))
    assert events[0]["type"] == "start" and set(events[0]) == {"type", "messageId"}
    assert events[-1]["type"] == "finish" and set(events[-1]) == {"type", "messageMetadata"}
    open_id: str | None = None
    for event in events[1:-1]:
        kind = event["type"]
        if kind == "text-start":
            assert open_id is None and set(event) == {"type", "id"}
            open_id = event["id"]
        elif kind == "text-delta":
            assert event["id"] == open_id and set(event) == {"type", "id", "delta"} and event["delta"]
        elif kind == "text-end":
            assert event["id"] == open_id and set(event) == {"type", "id"}
            open_id = None
        else:
            raise AssertionError(f"unexpected event {event}")
    assert open_id is None
    return events


def answer_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "text-delta")


class FakeServices:
    """Just what the web channel uses; ``script`` plays the turn runner."""

    def __init__(self, script: Script) -> None:
        self.settings = parse_settings({"gateway": {"public_url": PUBLIC}}, env={})
        self.metrics = Metrics()
        self.script = script
        self.events: list[InboundEvent] = []

    async def run_turn(self, event: InboundEvent, reply: Reply) -> Answer | None:
        self.events.append(event)
        return await self.script(event, reply)

    async def accept(self, events: list[InboundEvent]) -> list[bool]:
        self.events.extend(events)
        return [True] * len(events)


async def streaming(event: InboundEvent, reply: Reply) -> Answer:
    await reply.start()
    text = ""
    for piece in ["Hello", ", ", "world", "!"]:
        text += piece
        await reply.update(text)
    answer = Answer(text, "msg_9", "conv_7")
    await reply.finish(answer)
    return answer


@asynccontextmanager
async def web_chat(
    script: Script = streaming, **config: Any
) -> AsyncIterator[tuple[aiohttp.ClientSession, str, FakeServices]]:
    services = FakeServices(script)
    channel = WebChannel.from_config("site", {"type": "web", **config}, services)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_routes(channel.routes())
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        yield http, str(server.make_url("/chat/site")), services


async def post(http: aiohttp.ClientSession, url: str, payload: Any, **headers: str) -> aiohttp.ClientResponse:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await http.post(url + "/messages", data=data, headers={"Content-Type": "application/json", **headers})


async def status_of(http: aiohttp.ClientSession, url: str, payload: Any, **headers: str) -> int:
    """Post, read the whole answer, and return the status."""
    resp = await post(http, url, payload, **headers)
    await resp.read()
    return resp.status


async def test_answer_streams_as_a_ui_message_stream() -> None:
    async with web_chat() as (http, url, services):
        resp = await post(http, url, {"sessionId": "session-abc", "message": "hi"})
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
        events = read_ui_stream(await resp.read())
    assert [e["type"] for e in events] == ["start", "text-start"] + ["text-delta"] * 4 + ["text-end", "finish"]
    assert answer_text(events) == "Hello, world!"
    assert events[-1]["messageMetadata"] == {"conversationId": "conv_7", "messageId": "msg_9",
                                             "sessionId": "session-abc"}
    (event,) = services.events
    assert event.identity == Identity("web", "site", "session-abc")
    assert (event.channel, event.scope, event.text) == ("site", "session-abc", "hi")


async def test_each_request_is_a_new_event_of_the_same_conversation() -> None:
    async with web_chat() as (http, url, services):
        for _ in range(2):
            read_ui_stream(await (await post(http, url, {"sessionId": "session-abc", "message": "hi"})).read())
    first, second = services.events
    assert first.key != second.key
    assert first.conversation_key == second.conversation_key


async def test_a_failed_turn_shows_the_apology_after_what_already_streamed() -> None:
    async def breaks(event: InboundEvent, reply: Reply) -> None:
        await reply.update("Half an ans")
        await reply.fail("Sorry, I can't answer right now.")

    async with web_chat(breaks) as (http, url, _):
        events = read_ui_stream(await (await post(http, url, {"sessionId": "session-abc", "message": "x"})).read())
    assert answer_text(events) == "Half an ans\n\nSorry, I can't answer right now."
    assert events[-1]["messageMetadata"]["error"] is True


async def test_a_crashing_turn_still_ends_the_stream_with_an_apology() -> None:
    async def crashes(event: InboundEvent, reply: Reply) -> None:
        raise RuntimeError("bug in the core")

    async with web_chat(crashes) as (http, url, _):
        resp = await post(http, url, {"sessionId": "session-abc", "message": "x"})
        assert resp.status == 200
        events = read_ui_stream(await resp.read())
    assert "Sorry" in answer_text(events)
    assert events[-1]["messageMetadata"]["error"] is True


async def test_a_turn_without_an_answer_closes_the_stream_cleanly() -> None:
    async def silent(event: InboundEvent, reply: Reply) -> None:
        return None

    async with web_chat(silent) as (http, url, _):
        events = read_ui_stream(await (await post(http, url, {"sessionId": "session-abc", "message": "x"})).read())
    assert answer_text(events) == ""
    assert "error" not in events[-1]["messageMetadata"]


async def test_rewritten_text_goes_out_as_a_new_part_not_a_wrong_delta() -> None:
    async def rewrites(event: InboundEvent, reply: Reply) -> None:
        await reply.update("First try")
        await reply.finish(Answer("Second try, complete."))

    async with web_chat(rewrites) as (http, url, _):
        events = read_ui_stream(await (await post(http, url, {"sessionId": "session-abc", "message": "x"})).read())
    starts = [e["id"] for e in events if e["type"] == "text-start"]
    assert len(starts) == 2 and starts[0] != starts[1]
    assert [e["delta"] for e in events if e["type"] == "text-delta"] == ["First try", "Second try, complete."]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"message": "hi"}, 400, "invalid_session_id"),
        ({"sessionId": "abc", "message": "hi"}, 400, "invalid_session_id"),
        ({"sessionId": "session-abc"}, 400, "invalid_message"),
        ({"sessionId": "session-abc", "message": ""}, 400, "invalid_message"),
        ({"sessionId": "session-abc", "message": "x" * 51}, 413, "message_too_long"),
        (b"{oops", 400, "malformed_json"),
        (b"\xff" * 10, 400, "malformed_json"),
        (b"x" * 4_000, 413, "body_too_large"),
    ],
)
async def test_bad_requests_are_4xx_json_and_never_reach_the_agent(payload: Any, status: int, code: str) -> None:
    async with web_chat(max_message_chars=50) as (http, url, services):
        resp = await post(http, url, payload)
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == code
    assert services.events == []
    assert services.metrics.webhook_rejected.labels("site", str(status))._value.get() == 1


async def test_a_huge_body_is_refused_without_being_read_whole() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):  # 4 MiB if the server kept reading, sent without Content-Length
            yield b"x" * 65536

    async with web_chat() as (http, url, services):
        resp = await http.post(url + "/messages", data=chunks())
        assert resp.status == 413
    assert services.events == []


async def test_a_foreign_origin_is_refused_and_gets_no_cors() -> None:
    async with web_chat() as (http, url, services):
        payload = {"sessionId": "session-abc", "message": "hi"}
        refused = await post(http, url, payload, Origin="https://evil.example")
        assert refused.status == 403
        assert "Access-Control-Allow-Origin" not in refused.headers
        preflight = await http.options(url + "/messages", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert preflight.status == 403
        assert "Access-Control-Allow-Origin" not in preflight.headers
        # The page's own origin (public_url, or the address the request was sent to) is fine.
        assert await status_of(http, url, payload, Origin=PUBLIC) == 200
        own = url.rsplit("/chat", 1)[0]
        assert await status_of(http, url, payload, Origin=own) == 200
    assert len(services.events) == 2


async def test_listed_origins_get_cors_and_a_preflight() -> None:
    async with web_chat(allowed_origins=["https://shop.example"]) as (http, url, _):
        preflight = await http.options(url + "/messages", headers={
            "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()
        resp = await post(http, url, {"sessionId": "session-abc", "message": "hi"}, Origin="https://shop.example")
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "x-vercel-ai-ui-message-stream" in resp.headers["Access-Control-Expose-Headers"]
        read_ui_stream(await resp.read())
        other = await post(http, url, {"sessionId": "session-abc", "message": "hi"}, Origin="https://other.example")
        assert other.status == 403


async def test_sessions_are_rate_limited_with_retry_after() -> None:
    async with web_chat(rate_per_minute=2) as (http, url, services):
        for _ in range(2):
            assert await status_of(http, url, {"sessionId": "session-abc", "message": "hi"}) == 200
        limited = await post(http, url, {"sessionId": "session-abc", "message": "hi"})
        assert limited.status == 429
        assert int(limited.headers["Retry-After"]) == 30
        assert (await limited.json())["error"]["code"] == "rate_limited"
        assert await status_of(http, url, {"sessionId": "session-xyz", "message": "hi"}) == 200
    assert len(services.events) == 3


async def test_concurrent_answers_per_client_address_are_capped() -> None:
    release = asyncio.Event()

    async def slow(event: InboundEvent, reply: Reply) -> Answer:
        await release.wait()
        await reply.finish(Answer("done"))
        return Answer("done")

    async with web_chat(slow, max_concurrent_per_client=2) as (http, url, _):
        first = [asyncio.create_task(post(http, url, {"sessionId": f"session-{n}", "message": "hi"}))
                 for n in range(2)]
        while len(_.events) < 2:
            await asyncio.sleep(0.01)
        third = await post(http, url, {"sessionId": "session-3", "message": "hi"})
        assert third.status == 429
        release.set()
        for task in first:
            assert answer_text(read_ui_stream(await (await task).read())) == "done"
        assert await status_of(http, url, {"sessionId": "session-3", "message": "hi"}) == 200


async def test_a_browser_that_leaves_does_not_break_the_turn() -> None:
    finished = asyncio.Event()

    async def long_answer(event: InboundEvent, reply: Reply) -> Answer:
        text = ""
        for n in range(200):
            text += f"sentence {n}. " * 50
            await reply.update(text)
            await asyncio.sleep(0.005)
        answer = Answer(text)
        await reply.finish(answer)
        finished.set()
        return answer

    async with web_chat(long_answer) as (http, url, _):
        resp = await post(http, url, {"sessionId": "session-abc", "message": "hi"})
        await resp.content.read(100)
        resp.close()
        await asyncio.wait_for(finished.wait(), 10)


async def test_feedback_is_journaled_as_a_feedback_event_of_the_session() -> None:
    async with web_chat() as (http, url, services):
        vote = {"sessionId": "session-abc", "messageId": "msg_9", "feedback": "positive"}
        async with http.post(url + "/feedback", json=vote) as resp:
            assert resp.status == 202
        async with http.post(url + "/feedback", json={**vote, "feedback": "great"}) as bad:
            assert bad.status == 400
        async with http.post(url + "/feedback", json=vote, headers={"Origin": "https://evil.example"}) as foreign:
            assert foreign.status == 403
    (event,) = services.events
    assert (event.kind, event.scope) == ("feedback", "session-abc")
    assert event.identity == Identity("web", "site", "session-abc")
    assert event.meta == {"message_id": "msg_9", "feedback": "positive"}


async def test_the_page_is_served_with_a_strict_csp() -> None:
    async with web_chat(title="Ask <Acme> & co") as (http, url, _):
        redirect = await http.get(url, allow_redirects=False)
        assert redirect.status in (301, 308)
        assert redirect.headers["Location"] == "/chat/site/"
        page = await http.get(url + "/")
        assert page.status == 200
        assert page.content_type == "text/html"
        html = await page.text()
        csp = page.headers["Content-Security-Policy"]
        for js in ["static/chat.js", "static/chat.css"]:
            asset = await http.get(f"{url}/{js}")
            assert asset.status == 200
            assert asset.headers["X-Content-Type-Options"] == "nosniff"
            again = await http.get(f"{url}/{js}", headers={"If-None-Match": asset.headers["ETag"]})
            assert again.status == 304
        assert (await http.get(url + "/static/../channel.py")).status == 404
        assert (await http.get(url + "/static/index.html")).status == 404
    assert "<title>Ask &lt;Acme&gt; &amp; co</title>" in html
    assert "<script>" not in html and "style=" not in html  # nothing inline: the CSP forbids it
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp


async def test_check_prints_the_page_and_api_urls() -> None:
    channel = WebChannel.from_config("site", {"type": "web"}, FakeServices(streaming))  # type: ignore[arg-type]
    assert channel.webhook_urls("https://bot.example.com/") == [
        ("chat page", "https://bot.example.com/chat/site/"),
        ("chat API", "https://bot.example.com/chat/site/messages"),
        ("embed script", "https://bot.example.com/chat/site/embed.js"),
    ]
    assert "same origin only" in channel.describe()


async def test_behind_a_proxy_the_forwarded_address_is_the_client() -> None:
    release = asyncio.Event()

    async def slow(event: InboundEvent, reply: Reply) -> Answer:
        await release.wait()
        await reply.finish(Answer("done"))
        return Answer("done")

    async with web_chat(slow, max_concurrent_per_client=1, trust_forwarded_for=True) as (http, url, services):
        payload = {"sessionId": "session-1", "message": "hi"}
        first = asyncio.create_task(post(http, url, payload, **{"X-Forwarded-For": "spoofed, 203.0.113.7"}))
        while not services.events:
            await asyncio.sleep(0.01)
        same = await post(http, url, {**payload, "sessionId": "session-2"}, **{"X-Forwarded-For": "203.0.113.7"})
        assert same.status == 429
        other = asyncio.create_task(
            status_of(http, url, {**payload, "sessionId": "session-3"}, **{"X-Forwarded-For": "198.51.100.2"}))
        while len(services.events) < 2:
            await asyncio.sleep(0.01)
        release.set()
        assert await other == 200
        await (await first).read()
