"""Effectively-once at the agent: a turn resumed after a crash reads the conversation back first.

Each test plays the crashed instance itself: it makes the agent call the gateway had made (through
the gateway's own client) and journals the event with the progress the gateway had saved, as a
``kill -9`` right after the call would leave it. Then the live gateway resumes the entry. The
emulator keeps real history, so "the user's message appears once" is read from it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway import batched
from gateway.agent import AgentEvent, Finish, ToolCall
from gateway.errors import StreamBroken
from gateway.events import Identity, InboundEvent
from gateway.recovery import asked_marker
from gateway.services import AGENT
from gateway.store import JournalEntry
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis

TOKEN = "t"
USER_ID = "echo..ann"
SHOUT = 'call tool shout {"text": "hi"}'
SHOUTED = 'Tool shout returned: {"channel": "echo", "shout": "HI"}'


@pytest.fixture
async def gw(echo_plugin: Any) -> AsyncIterator[GatewayUnderTest]:
    async with running_gateway({"echo": {"type": "echo", "token": TOKEN}}) as gateway:
        yield gateway


def event(key: str, text: str) -> InboundEvent:
    return InboundEvent(channel="echo", key=key, identity=Identity("echo", "", "ann"), scope="ann", text=text)


async def resume(gw: GatewayUnderTest, key: str, text: str, progress: dict[str, Any]) -> None:
    """Journal the event as a crashed instance left it, and let the gateway resume it."""
    entry = JournalEntry(event(key, text), progress=progress, attempts=1)
    assert await gw.services.store.journal_add(entry)
    gw.dispatcher.kick(entry.event.conversation_key)
    await gw.idle()


async def send(gw: GatewayUnderTest, key: str, text: str) -> None:
    async with aiohttp.ClientSession() as s, s.post(
        f"{gw.url}/webhooks/echo", json={"id": key, "user": "ann", "text": text}, headers={"X-Echo-Token": TOKEN}
    ) as resp:
        assert resp.status == 200
    await gw.idle()


async def crashed_call(gw: GatewayUnderTest, text: str | None, conversation_id: str | None = None) -> list[AgentEvent]:
    return [e async for e in gw.app[AGENT].chat(text, conversation_id=conversation_id, user_id=USER_ID)]


def requests(gw: GatewayUnderTest, suffix: str) -> list[Any]:
    return [r.json for r in gw.emulator.requests if r.method == "POST" and r.path.endswith(suffix)]


def user_messages(gw: GatewayUnderTest) -> list[str]:
    return [m.text for c in gw.emulator.state.conversations.values() for m in c.messages if m.role == "user"]


def sent(echo_plugin: Any) -> list[str]:
    return [x["text"] for x in echo_plugin.SENT]


async def test_a_recorded_answer_is_delivered_without_asking_again(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    await crashed_call(gw, "hello")  # the stream ended, but the gateway died before it learned anything
    await resume(gw, "k1", "hello", {"asked": asked_marker("hello", None, USER_ID, None)})
    assert sent(echo_plugin) == ['You said: "hello". This is message 1 of this conversation.']
    assert len(requests(gw, "/chat")) == 1
    await send(gw, "k2", "and now?")  # the recovered conversation is the person's conversation
    assert sent(echo_plugin)[-1] == 'You said: "and now?". This is message 2 of this conversation.'
    assert user_messages(gw) == ["hello", "and now?"]


async def test_an_answer_that_broke_off_is_regenerated_not_asked_again(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    gw.emulator.faults.cut_next_stream()
    with pytest.raises(StreamBroken):
        await crashed_call(gw, "tell me about the weather today")
    await resume(gw, "k1", "tell me about the weather today",
                 {"asked": asked_marker("tell me about the weather today", None, USER_ID, None)})
    assert sent(echo_plugin) == [
        'You said: "tell me about the weather today". This is message 1 of this conversation.'
    ]
    assert len(requests(gw, "/chat")) == 1 and len(requests(gw, "/retry")) == 1
    assert user_messages(gw) == ["tell me about the weather today"]


async def test_a_message_the_agent_never_recorded_is_sent(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    await resume(gw, "k1", "hello", {"asked": asked_marker("hello", None, USER_ID, None)})
    assert sent(echo_plugin) == ['You said: "hello". This is message 1 of this conversation.']
    assert user_messages(gw) == ["hello"]


async def test_the_same_words_said_again_are_matched_after_the_last_known_answer(
    gw: GatewayUnderTest, echo_plugin: Any
) -> None:
    await send(gw, "k1", "yes")
    state = await gw.services.store.get_conversation("echo:ann")
    assert state is not None and state.conversation_id and state.last_message_id
    marker = asked_marker("yes", state.conversation_id, USER_ID, state.last_message_id)
    # The second "yes" never reached the agent: the first one's answer must not be taken for it.
    await resume(gw, "k2", "yes", {"asked": marker})
    assert sent(echo_plugin)[-1] == 'You said: "yes". This is message 2 of this conversation.'
    # And once it did reach the agent, its own answer is delivered with no new call.
    await crashed_call(gw, "yes", state.conversation_id)
    state = await gw.services.store.get_conversation("echo:ann")
    assert state is not None
    calls = len(requests(gw, "/chat"))
    await resume(gw, "k3", "yes", {"asked": asked_marker("yes", state.conversation_id, USER_ID,
                                                         state.last_message_id)})
    assert sent(echo_plugin)[-1] == 'You said: "yes". This is message 3 of this conversation.'
    assert len(requests(gw, "/chat")) == calls
    assert user_messages(gw) == ["yes", "yes", "yes"]


async def test_a_tool_round_left_unanswered_is_run_and_submitted_once(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    events = await crashed_call(gw, SHOUT)
    assert any(isinstance(e, ToolCall) for e in events)
    await resume(gw, "k1", SHOUT, {"asked": asked_marker(SHOUT, None, USER_ID, None)})
    assert sent(echo_plugin) == [SHOUTED]
    assert len(requests(gw, "/tool-result")) == 1
    assert [r.get("message") for r in requests(gw, "/chat")] == [SHOUT, None]  # the ask, then one continue


async def test_a_tool_result_submitted_just_before_the_crash_is_not_submitted_again(
    gw: GatewayUnderTest, echo_plugin: Any
) -> None:
    events = await crashed_call(gw, SHOUT)
    [call] = [e for e in events if isinstance(e, ToolCall)]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.conversation_id
    output = {"channel": "echo", "shout": "HI"}
    await gw.app[AGENT].submit_tool_result(finish.conversation_id, call.tool_call_id, output)
    # The output was saved, the submission went through, the crash came before it was noted.
    marker = {**asked_marker(SHOUT, finish.conversation_id, USER_ID, None), "user_message_id": finish.user_message_id}
    await resume(gw, "k1", SHOUT, {"asked": marker, "outputs": {call.tool_call_id: output}})
    assert sent(echo_plugin) == [SHOUTED]
    assert len(requests(gw, "/tool-result")) == 1
    assert [r.get("message") for r in requests(gw, "/chat")] == [SHOUT, None]


async def test_a_continuation_already_answered_is_delivered_whole(gw: GatewayUnderTest, echo_plugin: Any) -> None:
    events = await crashed_call(gw, "where is order 77?")
    [call] = [e for e in events if isinstance(e, ToolCall)]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.conversation_id
    await gw.app[AGENT].submit_tool_result(finish.conversation_id, call.tool_call_id, {"status": "late"})
    await crashed_call(gw, None, finish.conversation_id)
    await resume(gw, "k1", "where is order 77?",
                 {"asked": asked_marker("where is order 77?", finish.conversation_id, USER_ID, None)})
    assert sent(echo_plugin) == ['Let me check order 77.\n\nHere is what I found for order 77: {"status": "late"}']
    assert len(requests(gw, "/chat")) == 2 and len(requests(gw, "/tool-result")) == 1


async def test_a_read_the_store_noted_counts_as_asked(echo_plugin: Any) -> None:
    """On Redis the ``asked`` record is noted with the turn's read (no store call of its own): a
    run killed after the agent call leaves only that, and the resumed turn still asks nobody twice."""
    flush_test_redis()
    async with running_gateway({"echo": {"type": "echo", "token": TOKEN}}, store=REDIS_TEST_URL) as gw:
        store = gw.services.store
        await send(gw, "k1", "yes")
        state = await store.get_conversation("echo:ann")
        assert state is not None and state.conversation_id
        # The crashed run: journaled, its read noted, the agent asked; then kill -9.
        crashed = event("k2", "yes")
        assert await store.journal_add(JournalEntry(crashed, attempts=1))
        read = await batched.turn_read(store, crashed.identity.key(), crashed.conversation_key, None,
                                       (crashed.journal_key, time.time()))
        assert read.noted and read.state is not None and read.state.conversation_id == state.conversation_id
        await crashed_call(gw, "yes", state.conversation_id)
        calls = len(requests(gw, "/chat"))
        gw.dispatcher.kick(crashed.conversation_key)
        await gw.idle()
        assert sent(echo_plugin)[-1] == 'You said: "yes". This is message 2 of this conversation.'
        assert len(requests(gw, "/chat")) == calls
        assert user_messages(gw) == ["yes", "yes"]


async def test_a_turn_whose_lease_was_taken_over_stops_before_posting_and_the_answer_shows_once(
    echo_plugin: Any,
) -> None:
    """A Redis outage longer than the lease lets another worker resume an entry whose turn still
    runs. The stale turn's writes are fenced by the lease: it stops before posting, and the
    worker that took over delivers the agent's answer, once, without asking again."""
    import redis.asyncio as aioredis

    flush_test_redis()
    async with running_gateway({"echo": {"type": "echo", "token": TOKEN}}, store=REDIS_TEST_URL) as gw:
        gw.emulator.faults.token_delay = 0.05
        raw = aioredis.from_url(REDIS_TEST_URL, decode_responses=True)
        lock = "switchboard:v1:lock:conv:echo:ann"
        try:
            async with aiohttp.ClientSession() as s, s.post(
                f"{gw.url}/webhooks/echo", json={"id": "k1", "user": "ann", "text": "hello there"},
                headers={"X-Echo-Token": TOKEN},
            ) as resp:
                assert resp.status == 200
            while not requests(gw, "/chat"):  # the agent is streaming its answer now
                await asyncio.sleep(0.01)
            await raw.set(lock, "another-worker", px=60_000)  # the takeover
            await gw.idle()
            assert sent(echo_plugin) == []  # the stale turn stopped at its first fenced write
            await raw.delete(lock)  # the other worker, which resumes the entry now
            gw.dispatcher.kick("echo:ann")
            await gw.idle()
        finally:
            await raw.aclose()
        assert sent(echo_plugin) == ['You said: "hello there". This is message 1 of this conversation.']
        assert len(requests(gw, "/chat")) == 1 and user_messages(gw) == ["hello there"]
