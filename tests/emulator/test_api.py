"""The emulator's API contract: authentication, envelope, validation, answers and the brain."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from adapters.emulator import Emulator
from adapters.emulator.brain import MARKDOWN_SAMPLE, answer, long_text, words
from tests.emulator.support import AUTH, Api, error_of, streamed_text

# -- authentication, envelope, headers ----------------------------------------------------------------


async def test_health_needs_no_auth(api: Api) -> None:
    status, headers, doc = await api.call("GET", "/health", headers={})
    assert status == 200 and doc["status"] == "ok" and isinstance(doc["timestamp"], int)
    assert headers["x-request-id"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}])
async def test_missing_api_key_is_401_in_the_envelope(api: Api, headers: dict[str, str]) -> None:
    status, resp_headers, doc = await api.call("POST", "/agents/a1/chat", {"message": "hi"}, headers=headers)
    assert status == 401
    assert error_of(doc) == ("AUTH_MISSING_API_KEY", None)
    assert resp_headers["x-request-id"].startswith("req_")


async def test_unknown_agent_and_route(api: Api) -> None:
    status, _, doc = await api.chat("missing-agent", message="hi")
    assert status == 404 and error_of(doc)[0] == "AGENT_NOT_FOUND"
    status, _, doc = await api.call("GET", "/nope")
    assert status == 404 and error_of(doc)[0] == "RESOURCE_NOT_FOUND"


async def test_rate_limit_headers_on_every_response(api: Api) -> None:
    remaining = []
    for path in ("/health", "/agents/a1/conversations"):
        status, headers, _ = await api.call("GET", path)
        assert status == 200
        assert headers["X-RateLimit-Limit"] == "100"
        now_ms = time.time() * 1000
        # Milliseconds, not seconds: within the 10-second window from now.
        assert now_ms <= int(headers["X-RateLimit-Reset"]) <= now_ms + 10_500
        remaining.append(int(headers["X-RateLimit-Remaining"]))
    _, headers, _ = await api.chat(message="hi")  # streams carry them too
    assert int(headers["X-RateLimit-Remaining"]) == remaining[-1] - 1 == remaining[0] - 2


async def test_rate_limit_is_off_by_default_and_enforced_on_request() -> None:
    async with Emulator().serve() as url, aiohttp.ClientSession() as session:
        for _ in range(105):
            async with session.get(url + "/health") as resp:
                assert resp.status == 200
    async with Emulator(rate_limit=True).serve() as url, aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(url + "/health", headers=AUTH) as resp:
                assert resp.status == 200
        async with session.get(url + "/health", headers=AUTH) as resp:
            assert resp.status == 429
            assert error_of(await resp.json())[0] == "RATE_LIMIT_TOO_MANY_REQUESTS"
            assert 1 <= int(resp.headers["Retry-After"]) <= 10
            assert resp.headers["X-RateLimit-Remaining"] == "0"
        # Per key: another key still has its own window.
        async with session.get(url + "/health", headers={"Authorization": "Bearer other"}) as resp:
            assert resp.status == 200


async def test_rate_limit_window_slides() -> None:
    emulator = Emulator(rate_limit=True, rate_limit_max=2, rate_limit_window=0.3)
    async with emulator.serve() as url, aiohttp.ClientSession() as session:
        codes = []
        for _ in range(3):
            async with session.get(url + "/health") as resp:
                codes.append(resp.status)
        await asyncio.sleep(0.35)
        async with session.get(url + "/health") as resp:
            codes.append(resp.status)
    assert codes == [200, 200, 429, 200]


# -- validation -------------------------------------------------------------------------------------


async def test_invalid_json_and_non_object_bodies(api: Api) -> None:
    status, _, doc = await api.call(
        "POST", "/agents/a1/chat", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert status == 400 and error_of(doc)[0] == "VALIDATION_INVALID_JSON"
    status, _, doc = await api.call("POST", "/agents/a1/chat", [1, 2])
    assert status == 400 and error_of(doc)[0] == "VALIDATION_INVALID_BODY"


async def test_validation_errors_list_every_field(api: Api) -> None:
    status, _, doc = await api.chat(message=5, stream="yes", userId="bad id!")
    assert status == 400
    code, details = error_of(doc)
    assert code == "VALIDATION_INVALID_BODY"
    assert details is not None and set(details) == {"message", "stream", "userId"}


async def test_a_new_conversation_needs_a_message(api: Api) -> None:
    status, _, doc = await api.chat()
    assert status == 400 and "message" in (error_of(doc)[1] or {})


async def test_user_id_rules(api: Api) -> None:
    assert (await api.chat(message="x", userId="a" * 129))[0] == 400
    first = await api.chat_json(message="hi", userId="A.b_c-" + "9" * 122)  # exactly 128
    assert first["userId"] == "A.b_c-" + "9" * 122
    # Ignored when continuing: the conversation keeps its first userId.
    again = await api.chat_json(message="hi", conversationId=first["conversationId"], userId="someone.else")
    assert again["userId"] == first["userId"]
    anonymous = await api.chat_json(message="hi")
    assert anonymous["userId"] is None
    status, _, doc = await api.call("GET", "/agents/a1/users/someone.else/conversations")
    assert status == 200 and doc["data"] == [] and doc["pagination"]["total"] == 0
    status, _, doc = await api.call("GET", f"/agents/a1/users/{first['userId']}/conversations")
    assert [c["id"] for c in doc["data"]] == [first["conversationId"]]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "cursor=garbage"])
async def test_pagination_parameters_are_validated(api: Api, query: str) -> None:
    status, _, doc = await api.call("GET", f"/agents/a1/conversations?{query}")
    assert status == 400 and error_of(doc)[0] == "VALIDATION_INVALID_BODY"


# -- answers ----------------------------------------------------------------------------------------


async def test_stream_in_the_newer_form(api: Api) -> None:
    status, headers, events = await api.chat(message="order #12 please", userId="u1")
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["x-vercel-ai-ui-message-stream"] == "v1"
    kinds = [e if isinstance(e, str) else e["type"] for e in events]
    assert kinds[:2] == ["start", "text-start"] and kinds[-2:] == ["finish", "[DONE]"]
    assert kinds.index("text-end") < kinds.index("tool-input-start") < kinds.index("tool-input-available")
    assert "tool-input-delta" in kinds
    assert all(e["id"] == events[1]["id"] for e in events if isinstance(e, dict) and e["type"] == "text-delta")
    assert streamed_text(events) == "Let me check order 12."
    available = next(e for e in events if isinstance(e, dict) and e["type"] == "tool-input-available")
    assert (available["toolName"], available["input"]) == ("lookupOrder", {"orderId": "12"})
    finish = events[-2]
    assert finish["finishReason"] == "tool-calls"
    meta = finish["messageMetadata"]
    assert set(meta) == {"conversationId", "userId", "messageId", "userMessageId", "usage"}
    assert meta["messageId"] == events[0]["messageId"] and meta["userId"] == "u1" and meta["usage"] == {"credits": 1}


async def test_stream_in_the_older_form() -> None:
    async with Emulator(legacy_events=True).serve() as url, aiohttp.ClientSession() as session:
        status, _, events = await Api(session, url).chat(message="hello")
    kinds = [e if isinstance(e, str) else e["type"] for e in events]
    assert status == 200 and "text-start" not in kinds and kinds[-1] == "[DONE]"
    assert all("id" not in e for e in events if isinstance(e, dict) and e["type"] == "text-delta")
    assert events[-2]["metadata"]["conversationId"] and "messageMetadata" not in events[-2]


async def test_non_streaming_json_form(api: Api) -> None:
    doc = await api.chat_json(message="hello", userId="u2")
    assert doc["role"] == "assistant" and doc["id"].startswith("msg_")
    assert doc["parts"] == [{"type": "text", "text": 'You said: "hello". This is message 1 of this conversation.'}]
    assert doc["finishReason"] == "stop" and doc["usage"] == {"credits": 1}
    assert doc["conversationId"] and doc["userMessageId"] and doc["userId"] == "u2"


async def test_conversation_continuity_counts_user_messages(api: Api) -> None:
    conv = (await api.chat_json(message="one"))["conversationId"]
    doc = await api.chat_json(message="two", conversationId=conv)
    assert doc["parts"][0]["text"] == 'You said: "two". This is message 2 of this conversation.'
    other = await api.chat_json(message="fresh")
    assert other["parts"][0]["text"].endswith("This is message 1 of this conversation.")


async def test_tool_round_trip_and_tool_result_rules(api: Api, emulator: Emulator) -> None:
    doc = await api.chat_json(message='call tool getWeather {"city": "Oslo"}')
    conv = doc["conversationId"]
    assert doc["finishReason"] == "tool-calls"
    [call] = doc["parts"]
    assert (call["type"], call["toolName"], call["input"]) == ("tool-call", "getWeather", {"city": "Oslo"})
    path = f"/agents/a1/conversations/{conv}/tool-result"

    status, _, early = await api.chat(conversationId=conv)  # results first
    assert status == 400 and error_of(early)[0] == "VALIDATION_INVALID_BODY"
    status, _, bad = await api.call("POST", path, {"toolCallId": call["toolCallId"]})
    assert status == 400 and error_of(bad)[1] == {"output": "Required"}
    status, _, unknown = await api.call("POST", path, {"toolCallId": "call_nope", "output": 1})
    assert status == 404 and error_of(unknown)[0] == "RESOURCE_TOOL_CALL_NOT_FOUND"

    status, _, ok = await api.call(
        "POST", path, {"toolCallId": call["toolCallId"], "output": {"temp": -3, "sky": "snow"}}
    )
    assert status == 200 and ok == {"data": {"success": True}}
    status, _, twice = await api.call("POST", path, {"toolCallId": call["toolCallId"], "output": 1})
    assert status == 404 and error_of(twice)[0] == "RESOURCE_TOOL_CALL_NOT_FOUND"

    status, _, events = await api.chat(conversationId=conv)
    assert streamed_text(events) == 'Tool getWeather returned: {"sky": "snow", "temp": -3}'
    assert events[-2]["finishReason"] == "stop" and events[-2]["messageMetadata"]["userMessageId"] is None
    status, _, doc = await api.chat(conversationId=conv)  # nothing left to continue
    assert status == 400 and error_of(doc)[0] == "VALIDATION_INVALID_BODY"

    status, _, page = await api.call("GET", f"/agents/a1/conversations/{conv}/messages")
    assert [p["type"] for p in page["data"][1]["parts"]] == ["tool-call", "tool-result"]


async def test_a_new_message_expires_pending_tool_calls(api: Api) -> None:
    doc = await api.chat_json(message="order 3")
    call_id = doc["parts"][1]["toolCallId"]
    await api.chat_json(message="never mind", conversationId=doc["conversationId"])
    status, _, err = await api.call(
        "POST", f"/agents/a1/conversations/{doc['conversationId']}/tool-result", {"toolCallId": call_id, "output": 1}
    )
    assert status == 404 and error_of(err)[0] == "RESOURCE_TOOL_CALL_NOT_FOUND"


async def test_retry_truncates_and_regenerates(api: Api, emulator: Emulator) -> None:
    first = await api.chat_json(message="order 9")
    conv = first["conversationId"]
    call_id = first["parts"][1]["toolCallId"]
    await api.call("POST", f"/agents/a1/conversations/{conv}/tool-result", {"toolCallId": call_id, "output": "ok"})
    cont = await api.chat_json(conversationId=conv)
    status, _, events = await api.call("POST", f"/agents/a1/conversations/{conv}/retry", {"messageId": cont["id"]})
    assert status == 200 and streamed_text(events) == "Let me check order 9."
    _, _, page = await api.call("GET", f"/agents/a1/conversations/{conv}/messages")
    assert [m["role"] for m in page["data"]] == ["user", "assistant"]
    assert page["data"][1]["id"] == events[0]["messageId"] != first["id"]

    retry = f"/agents/a1/conversations/{conv}/retry"
    status, _, err = await api.call("POST", retry, {"messageId": page["data"][0]["id"]})
    assert status == 400 and error_of(err)[0] == "RESOURCE_MESSAGE_NOT_ASSISTANT"
    status, _, err = await api.call("POST", retry, {"messageId": "msg_nope"})
    assert status == 404 and error_of(err)[0] == "CHAT_RETRY_MESSAGE_NOT_FOUND"
    emulator.state.conversations[conv].messages.pop(0)  # an answer with no user turn before it
    status, _, err = await api.call("POST", retry, {"messageId": page["data"][1]["id"], "stream": False})
    assert status == 400 and error_of(err)[0] == "CHAT_RETRY_NO_USER_MESSAGE"


async def test_feedback_rules(api: Api) -> None:
    doc = await api.chat_json(message="hi")
    base = f"/agents/a1/conversations/{doc['conversationId']}/messages"
    status, _, ok = await api.call("PATCH", f"{base}/{doc['id']}/feedback", {"feedback": "negative"})
    assert status == 200 and ok["data"]["feedback"] == "negative"
    status, _, err = await api.call("PATCH", f"{base}/{doc['id']}/feedback", {"feedback": "meh"})
    assert status == 400 and "feedback" in (error_of(err)[1] or {})
    status, _, err = await api.call("PATCH", f"{base}/{doc['userMessageId']}/feedback", {"feedback": "positive"})
    assert status == 400 and error_of(err)[0] == "RESOURCE_MESSAGE_NOT_ASSISTANT"
    status, _, err = await api.call("PATCH", f"{base}/msg_nope/feedback", {"feedback": None})
    assert status == 404 and error_of(err)[0] == "RESOURCE_MESSAGE_NOT_FOUND"


async def test_conversations_belong_to_their_agent(api: Api, emulator: Emulator) -> None:
    conv = (await api.chat_json(message="hi"))["conversationId"]
    status, _, err = await api.chat("a2", message="hi", conversationId=conv)
    assert status == 409 and error_of(err)[0] == "CHAT_CONVERSATION_MISMATCH"
    status, _, err = await api.call("GET", f"/agents/a2/conversations/{conv}")
    assert status == 404 and error_of(err)[0] == "RESOURCE_NOT_FOUND"
    emulator.end_conversation(conv)
    status, _, err = await api.chat(message="hi", conversationId=conv)
    assert status == 400 and error_of(err)[0] == "CHAT_CONVERSATION_NOT_ONGOING"


async def test_cursor_pagination(api: Api) -> None:
    conv = None
    for i in range(5):
        conv = (await api.chat_json(message=f"m{i}", conversationId=conv))["conversationId"] if conv else (
            await api.chat_json(message=f"m{i}")
        )["conversationId"]  # fmt: skip
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = f"?limit=4&cursor={cursor}" if cursor else "?limit=4"
        status, _, doc = await api.call("GET", f"/agents/a1/conversations/{conv}/messages{query}")
        assert status == 200 and doc["pagination"]["total"] == 10
        stamps = [m["createdAt"] for m in doc["data"]]
        assert stamps == sorted(stamps)  # chronological within a page
        seen = [m["id"] for m in doc["data"]] + seen
        pages += 1
        cursor = doc["pagination"]["cursor"]
        assert doc["pagination"]["hasMore"] == (cursor is not None)
        if cursor is None:
            break
    assert pages == 3 and len(set(seen)) == 10
    _, _, full = await api.call("GET", f"/agents/a1/conversations/{conv}/messages?limit=100")
    assert [m["id"] for m in full["data"]] == seen

    # The get-conversation cursor works on the messages endpoint; default page size is 20.
    _, _, detail = await api.call("GET", f"/agents/a1/conversations/{conv}?limit=6")
    assert len(detail["data"]["messages"]) == 6 and detail["data"]["status"] == "ongoing"
    _, _, older = await api.call(
        "GET", f"/agents/a1/conversations/{conv}/messages?cursor={detail['pagination']['cursor']}"
    )
    assert [m["id"] for m in older["data"]] == seen[:4]
    # A cursor is bound to its listing.
    status, _, _ = await api.call("GET", f"/agents/a1/conversations?cursor={detail['pagination']['cursor']}")
    assert status == 400


async def test_conversation_listing_order_and_dates(api: Api) -> None:
    ids = [(await api.chat_json(message=f"c{i}", userId="u"))["conversationId"] for i in range(3)]
    _, _, doc = await api.call("GET", "/agents/a1/conversations")
    assert [c["id"] for c in doc["data"]] == ids[::-1]  # newest first
    assert {"id", "title", "createdAt", "updatedAt", "userId", "status"} <= set(doc["data"][0])
    await api.chat_json(message="bump", conversationId=ids[0])
    _, _, mine = await api.call("GET", "/agents/a1/users/u/conversations")
    assert mine["data"][0]["id"] == ids[0]  # by last activity
    _, _, future = await api.call("GET", "/agents/a1/conversations?startDate=2999-01-01")
    assert future["data"] == [] and future["pagination"]["total"] == 0
    status, _, _ = await api.call("GET", "/agents/a1/conversations?endDate=yesterday")
    assert status == 400


# -- the brain --------------------------------------------------------------------------------------


def test_brain_rules() -> None:
    order = answer("Where is ORDER #1234?", 1)
    assert order.text == "Let me check order 1234." and order.finish_reason == "tool-calls"
    assert [(c.name, c.input) for c in order.calls] == [("lookupOrder", {"orderId": "1234"})]
    tool = answer('call tool lookupOrder {"orderId": "7"}', 1)
    assert tool.text == "" and [(c.name, c.input, c.rule) for c in tool.calls] == [
        ("lookupOrder", {"orderId": "7"}, "tool")
    ]
    assert answer("call tool ping", 1).calls[0].input == {}
    assert not answer("call tool ping {not json}", 3).calls
    assert answer("show me some Markdown", 1).text == MARKDOWN_SAMPLE
    for needle in ("# ", "**bold**", "_italic_", "~~strike~~", "`inline code`", "```", "](https://example.com)",
                   "\n- ", "\n1. ", "<", ">", "&"):  # fmt: skip
        assert needle in MARKDOWN_SAMPLE
    assert answer("hi", 4).text == 'You said: "hi". This is message 4 of this conversation.'


def test_long_answers() -> None:
    text = answer("give me a long 1000 answer", 1).text
    assert len(text) >= 1000 and text == long_text(1000)
    paragraphs = text.split("\n\n")
    assert paragraphs[0].count("This is sentence") == 5
    assert paragraphs[1].startswith("This is sentence 6 of the long answer.")
    assert "This is sentence 17 of the long answer." in text


def test_text_is_streamed_as_word_sized_deltas() -> None:
    text = "Hello  there,\nworld! "
    assert words(text) == ["Hello  ", "there,\n", "world! "]
    assert "".join(words(long_text(500))) == long_text(500)


