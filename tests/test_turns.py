"""The turn runner end to end: a third-party channel plugin, the emulator, tools, order, failures."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from switchboard.testing import GatewayUnderTest, running_gateway

TOKEN = "echo-secret"
ECHO = {"echo": {"type": "echo", "token": TOKEN}}


def chat_requests(gw: GatewayUnderTest) -> list[dict[str, Any]]:
    """Bodies of the agent chat calls the emulator received, in order."""
    return [r.json for r in gw.emulator.requests if r.method == "POST" and r.path.endswith("/chat")]


async def post(
    gw: GatewayUnderTest, body: Any, *, token: str = TOKEN, raw: bytes | None = None
) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as s:
        data: Any = io.BytesIO(raw) if raw is not None else json.dumps(body).encode()
        resp = await s.post(f"{gw.url}/webhooks/echo", data=data, headers={"X-Echo-Token": token})
        await resp.read()
        return resp


@pytest.fixture
async def gw(echo_plugin: Any) -> AsyncIterator[GatewayUnderTest]:
    async with running_gateway(ECHO) as gw:
        yield gw


async def test_answer_is_delivered_and_the_conversation_continues(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    assert (await post(gw, {"id": "m1", "user": "ann", "text": "hello"})).status == 200
    await gw.idle()
    assert (await post(gw, {"id": "m2", "user": "ann", "text": "again"})).status == 200
    await gw.idle()
    texts = [s["text"] for s in echo_plugin.SENT]
    assert texts == [
        'You said: "hello". This is message 1 of this conversation.',
        'You said: "again". This is message 2 of this conversation.',
    ]
    first, second = chat_requests(gw)
    assert first["userId"] == "echo..ann" and "conversationId" not in first
    assert second["conversationId"]  # learned from the first answer's stream


async def test_duplicate_event_is_answered_once(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    body = {"id": "same", "user": "bob", "text": "hi"}
    statuses = await asyncio.gather(*(post(gw, body) for _ in range(5)))
    await gw.idle()
    assert [r.status for r in statuses] == [200] * 5
    assert len(chat_requests(gw)) == 1
    assert len(echo_plugin.SENT) == 1


async def test_bad_signature_is_refused_before_any_work(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    resp = await post(gw, {"id": "x", "user": "eve", "text": "hi"}, token="wrong")
    await gw.idle()
    assert resp.status == 401
    assert chat_requests(gw) == [] and echo_plugin.SENT == []


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[]", b'{"id": 1}'])
async def test_malformed_bodies_are_400(gw: GatewayUnderTest, raw: bytes) -> None:
    assert (await post(gw, None, raw=raw)).status == 400


async def test_oversize_body_is_413(gw: GatewayUnderTest) -> None:
    assert (await post(gw, None, raw=b"x" * (1024 * 1024 + 1))).status == 413


async def test_messages_of_one_conversation_reach_the_agent_in_order(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    gw.emulator.faults.token_delay = 0.001
    for i in range(30):
        await post(gw, {"id": f"o{i}", "user": "carol", "text": f"n{i}"})
        await post(gw, {"id": f"p{i}", "user": f"other{i}", "text": "parallel"})
    await gw.idle(30)
    carol = [r["message"] for r in chat_requests(gw) if r.get("message", "").startswith("n")]
    assert carol == [f"n{i}" for i in range(30)]
    answers = [s["text"] for s in echo_plugin.SENT if s["user"] == "carol"]
    assert answers[-1] == 'You said: "n29". This is message 30 of this conversation.'


async def test_new_command_starts_a_fresh_conversation(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    for i, text in enumerate(["one", "two", "/new", "three"]):
        await post(gw, {"id": f"n{i}", "user": "dan", "text": text})
        await gw.idle()
    texts = [s["text"] for s in echo_plugin.SENT]
    assert texts[2].startswith("Started a new conversation")
    assert texts[3] == 'You said: "three". This is message 1 of this conversation.'


async def test_retry_command_regenerates_the_last_answer(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    await post(gw, {"id": "r1", "user": "eli", "text": "hello"})
    await gw.idle()
    await post(gw, {"id": "r2", "user": "eli", "text": "/retry"})
    await gw.idle()
    assert any(r.path.endswith("/retry") for r in gw.emulator.requests)
    assert echo_plugin.SENT[1]["text"] == echo_plugin.SENT[0]["text"]


class ToolServer:
    """A customer's HTTP tool endpoint that records what it is sent."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.received: list[dict[str, Any]] = []
        self.status, self.delay = status, delay

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        await asyncio.sleep(self.delay)
        body = self.received[-1]["input"]
        return web.json_response({"status": "shipped", "order": body.get("orderId")}, status=self.status)


@pytest.fixture
async def tool_server() -> AsyncIterator[tuple[ToolServer, str]]:
    tool = ToolServer()
    app = web.Application()
    app.router.add_post("/lookup", tool.handle)
    async with TestServer(app) as server:
        yield tool, str(server.make_url("/lookup"))


async def test_url_tool_round_trip(echo_plugin: Any, tool_server: tuple[ToolServer, str]) -> None:
    tool, url = tool_server
    async with running_gateway(ECHO, tools={"lookupOrder": {"url": url}}) as gw:
        await post(gw, {"id": "t1", "user": "fay", "text": "Where is order 1234?"})
        await gw.idle()
        results = [r.json for r in gw.emulator.requests if r.path.endswith("/tool-result")]
    assert tool.received[0]["toolName"] == "lookupOrder"
    assert tool.received[0]["input"] == {"orderId": "1234"}
    assert tool.received[0]["userId"] == "echo..fay" and tool.received[0]["channel"] == "echo"
    assert tool.received[0]["conversationId"] and tool.received[0]["toolCallId"]
    assert results[0]["output"] == {"order": "1234", "status": "shipped"}
    text = echo_plugin.SENT[0]["text"]
    assert text.startswith("Let me check order 1234.")
    assert 'Here is what I found for order 1234: {"order": "1234", "status": "shipped"}' in text


@pytest.mark.parametrize(("status", "delay", "code"), [(500, 0.0, "TOOL_HTTP_ERROR"), (200, 2.0, "TOOL_TIMEOUT")])
async def test_url_tool_failures_become_error_outputs(
    echo_plugin: Any, status: int, delay: float, code: str
) -> None:
    tool = ToolServer(status=status, delay=delay)
    app = web.Application()
    app.router.add_post("/lookup", tool.handle)
    async with TestServer(app) as server, running_gateway(
        ECHO, tools={"lookupOrder": {"url": str(server.make_url("/lookup")), "timeout": 0.5}}
    ) as gw:
        await post(gw, {"id": "t2", "user": "gus", "text": "order 77"})
        await gw.idle()
    assert f'"code": "{code}"' in echo_plugin.SENT[0]["text"]


async def test_entry_point_tool_plugin(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    await post(gw, {"id": "e1", "user": "hal", "text": 'call tool shout {"text": "quiet"}'})
    await gw.idle()
    assert echo_plugin.SENT[0]["text"] == 'Tool shout returned: {"channel": "echo", "shout": "QUIET"}'


async def test_builtin_tool_plugin(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    await post(gw, {"id": "b1", "user": "ida", "text": "call tool getCurrentTime"})
    await gw.idle()
    assert echo_plugin.SENT[0]["text"].startswith('Tool getCurrentTime returned: {"utc": "20')


async def test_unknown_tool_never_leaves_the_conversation_stuck(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    await post(gw, {"id": "u1", "user": "jo", "text": "call tool noSuchTool"})
    await gw.idle()
    await post(gw, {"id": "u2", "user": "jo", "text": "still there?"})
    await gw.idle()
    first, second = (s["text"] for s in echo_plugin.SENT)
    assert '"code": "UNKNOWN_TOOL"' in first
    assert second == 'You said: "still there?". This is message 2 of this conversation.'


async def test_agent_outage_ends_in_an_apology_not_silence(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    gw.emulator.faults.fail_next(500, count=10)
    await post(gw, {"id": "f1", "user": "kim", "text": "anyone?"})
    await gw.idle(30)
    assert echo_plugin.SENT[0]["text"].startswith("Sorry")
    async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/metrics") as r:
        assert 'switchboard_turns_total{channel="echo",outcome="failed"} 1.0' in await r.text()


async def test_agent_429_is_waited_out(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    gw.emulator.faults.fail_next(429, count=1, retry_after=0.3)
    await post(gw, {"id": "q1", "user": "lee", "text": "hi"})
    await gw.idle(30)
    assert echo_plugin.SENT[0]["text"] == 'You said: "hi". This is message 1 of this conversation.'


async def test_health_readiness_and_metrics(gw: GatewayUnderTest) -> None:
    await post(gw, {"id": "h1", "user": "max", "text": "hi"})
    await gw.idle()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{gw.url}/healthz") as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})
        async with s.get(f"{gw.url}/readyz") as r:
            assert r.status == 200
        async with s.get(f"{gw.url}/metrics") as r:
            text = await r.text()
    assert 'switchboard_inbound_events_total{channel="echo",outcome="accepted"} 1.0' in text
    assert "switchboard_time_to_first_token_seconds_bucket" in text
    assert "switchboard_ack_seconds_count" in text


async def test_readyz_reports_an_unreachable_agent(echo_plugin: Any) -> None:
    dead_agent = {"api_base": "http://127.0.0.1:9/api/v2", "max_attempts": 1}
    async with (
        running_gateway(ECHO, agent=dead_agent) as gw,
        aiohttp.ClientSession() as s,
        s.get(f"{gw.url}/readyz") as r,
    ):
        body = await r.json()
    assert r.status == 503 and "agent" in body["problems"]


async def test_a_notice_is_delivered_as_it_is_without_the_agent(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    assert (await post(gw, {"id": "n1", "user": "ann", "text": "Welcome!", "notice": True})).status == 200
    await gw.idle()
    assert [s["text"] for s in echo_plugin.SENT] == ["Welcome!"]
    assert chat_requests(gw) == []


async def test_a_preface_reaches_the_agent_but_never_hides_a_command(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    await post(gw, {"id": "p1", "user": "ann", "text": "hello", "preface": "[Viewing #general]"})
    await gw.idle()
    await post(gw, {"id": "p2", "user": "ann", "text": "/new", "preface": "[Viewing #general]"})
    await gw.idle()
    assert [c["message"] for c in chat_requests(gw)] == ["[Viewing #general]\n\nhello"]
    assert "new conversation" in echo_plugin.SENT[-1]["text"].lower()
