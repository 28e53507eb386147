"""The web chat through a real gateway and the Chatbase emulator: streaming, continuity, tools."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from switchboard.testing import running_gateway
from tests.test_web_channel import answer_text, read_ui_stream

WEB = {"web": {"type": "web"}}


async def chat(http: aiohttp.ClientSession, base: str, session_id: str, message: str) -> list[dict[str, Any]]:
    async with http.post(f"{base}/chat/web/messages", json={"sessionId": session_id, "message": message}) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
        return read_ui_stream(await resp.read())


def chat_calls(emulator: Any) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.method == "POST" and r.path.endswith("/chat")]


async def test_the_same_session_continues_one_conversation_and_others_do_not() -> None:
    async with running_gateway(WEB) as gw, aiohttp.ClientSession() as http:
        first = await chat(http, gw.url, "session-aaa", "hello")
        second = await chat(http, gw.url, "session-aaa", "and again")
        other = await chat(http, gw.url, "session-bbb", "hi")
        calls = chat_calls(gw.emulator)
    assert answer_text(first) == 'You said: "hello". This is message 1 of this conversation.'
    assert answer_text(second) == 'You said: "and again". This is message 2 of this conversation.'
    assert answer_text(other).endswith("This is message 1 of this conversation.")
    # Word-sized deltas arrive as separate events: the answer is streamed, not sent at the end.
    assert sum(e["type"] == "text-delta" for e in second) > 5
    meta = second[-1]["messageMetadata"]
    assert meta["conversationId"] == first[-1]["messageMetadata"]["conversationId"]
    assert meta["conversationId"] != other[-1]["messageMetadata"]["conversationId"]
    assert meta["messageId"] and meta["sessionId"] == "session-aaa"
    # Web users are their own Chatbase users: namespaced by channel type and instance.
    assert {c["userId"] for c in calls if "userId" in c and not c.get("conversationId")} == {
        "web.web.session-2daaa", "web.web.session-2dbbb"}


async def test_a_tool_round_trip_streams_through() -> None:
    seen: list[dict[str, Any]] = []

    async def lookup(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"status": "shipped", "eta": "Tuesday"})

    tool_app = web.Application()
    tool_app.router.add_post("/lookup", lookup)
    async with TestServer(tool_app, host="127.0.0.1") as tools:
        config = {"lookupOrder": {"url": str(tools.make_url("/lookup"))}}
        async with running_gateway(WEB, tools=config) as gw, aiohttp.ClientSession() as http:
            events = await chat(http, gw.url, "session-tools", "Where is order 1234?")
    text = answer_text(events)
    assert text.startswith("Let me check order 1234.")
    assert 'Here is what I found for order 1234: {"eta": "Tuesday", "status": "shipped"}' in text
    assert [e["type"] for e in events].count("finish") == 1
    (call,) = seen
    assert (call["toolName"], call["input"], call["channel"]) == ("lookupOrder", {"orderId": "1234"}, "web")


async def test_an_agent_outage_ends_in_a_visible_apology() -> None:
    async with running_gateway(WEB, agent={"max_attempts": 1}) as gw, aiohttp.ClientSession() as http:
        gw.emulator.faults.fail_next(500, count=5)
        events = await chat(http, gw.url, "session-down", "hello")
    assert "Sorry" in answer_text(events)
    assert events[-1]["messageMetadata"]["error"] is True


async def test_a_stream_cut_mid_answer_keeps_the_text_and_apologises() -> None:
    async with running_gateway(WEB, agent={"max_attempts": 1}) as gw, aiohttp.ClientSession() as http:
        gw.emulator.faults.cut_next_stream()
        events = await chat(http, gw.url, "session-cut", "long 3000")
    text = answer_text(events)
    assert text.startswith("This is sentence 1 of the long answer.")
    assert "Sorry" in text.split("\n\n")[-1]
    assert events[-1]["messageMetadata"]["error"] is True


async def test_new_command_starts_a_fresh_conversation() -> None:
    async with running_gateway(WEB) as gw, aiohttp.ClientSession() as http:
        await chat(http, gw.url, "session-new", "one")
        reset = await chat(http, gw.url, "session-new", "/new")
        again = await chat(http, gw.url, "session-new", "two")
    assert "new conversation" in answer_text(reset).lower()
    assert answer_text(again).endswith("This is message 1 of this conversation.")


async def test_a_closed_browser_tab_does_not_lose_the_turn() -> None:
    async with running_gateway(WEB) as gw, aiohttp.ClientSession() as http:
        gw.emulator.faults.token_delay = 0.02
        resp = await http.post(f"{gw.url}/chat/web/messages", json={"sessionId": "session-tab", "message": "first"})
        await resp.content.readuntil(b"text-delta")
        resp.close()  # the user closed the tab while the answer was streaming
        gw.emulator.faults.token_delay = 0
        events = await chat(http, gw.url, "session-tab", "second")
    assert answer_text(events).endswith("This is message 2 of this conversation.")


async def test_refusals_over_the_real_gateway_are_4xx_not_500() -> None:
    bodies: list[Any] = [b"", b"{}", b"[]", b"null", {"sessionId": "x" * 65, "message": "hi"},
                         {"sessionId": "session-ok1", "message": "x" * 4001},
                         {"sessionId": "session-ok1", "message": {"nested": True}}]

    async def post(body: Any) -> int:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with http.post(f"{gw.url}/chat/web/messages", **kwargs) as resp:
            await resp.read()
            return resp.status

    async with running_gateway(WEB) as gw, aiohttp.ClientSession() as http:
        statuses = [await post(b) for b in bodies]
        foreign = await http.post(f"{gw.url}/chat/web/messages", headers={"Origin": "https://evil.example"},
                                  json={"sessionId": "session-ok1", "message": "hi"})
        assert foreign.status == 403
        foreign.release()
        big = await http.post(f"{gw.url}/chat/web/messages", data=io.BytesIO(b"{" + b" " * (2 * 1024 * 1024) + b"}"))
        assert big.status == 413
        big.release()
        assert chat_calls(gw.emulator) == []
    assert statuses == [400, 400, 400, 400, 400, 413, 400]


async def test_feedback_reaches_the_agent_for_the_sessions_answer() -> None:
    async with running_gateway(WEB) as gw, aiohttp.ClientSession() as http:
        events = await chat(http, gw.url, "session-vote", "rate me")
        meta = events[-1]["messageMetadata"]
        vote = {"sessionId": "session-vote", "messageId": meta["messageId"], "feedback": "negative"}
        async with http.post(f"{gw.url}/chat/web/feedback", json=vote) as resp:
            assert resp.status == 202
        await gw.idle()
        patches = [r for r in gw.emulator.requests if r.method == "PATCH"]
    (patch,) = patches
    assert patch.path.endswith(f"/conversations/{meta['conversationId']}/messages/{meta['messageId']}/feedback")
    assert patch.json == {"feedback": "negative"}
