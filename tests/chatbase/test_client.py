"""The Chatbase client against the emulator on a real port: conversations, tools, paging."""

from __future__ import annotations

import aiohttp
import pytest

from adapters.chatbase import FEEDBACK_FIELD, ChatbaseClient
from adapters.emulator import Emulator
from gateway.agent import MessageStart, TextDelta, ToolCall
from gateway.errors import (
    AgentNotFound,
    BadAgentRequest,
)
from tests.chatbase.support import collect, finish_of, make_client, text_of

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


