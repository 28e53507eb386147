"""Every documented stream shape, through the real client and the real gateway, against the emulator.

The emulator streams each shape of chatbase-api-v2.md ("Streaming responses") on request; what
matters to a person is that their second message continues the conversation of the first.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from adapters.chatbase import ChatbaseClient
from adapters.emulator import Emulator
from adapters.emulator.streaming import SHAPES, STREAM_ERROR_TEXT
from gateway.agent import ToolCall
from gateway.errors import StreamBroken
from switchboard.testing import running_gateway
from tests.chatbase.support import collect, finish_of, text_of

COMPLETE_SHAPES = [shape for shape in SHAPES if shape != "error"]


@pytest.mark.parametrize("shape", COMPLETE_SHAPES)
async def test_each_shape_continues_the_conversation_through_the_client(
    shape: str, client: ChatbaseClient, emulator: Emulator
) -> None:
    emulator.faults.stream_shape = shape
    first = await collect(client.chat("hello", user_id="u-1"))
    done = finish_of(first)
    assert done.conversation_id in emulator.state.conversations
    assert done.message_id and done.user_message_id and done.credits == 1
    second = await collect(client.chat("again", conversation_id=done.conversation_id))
    assert finish_of(second).conversation_id == done.conversation_id
    assert text_of(second) == 'You said: "again". This is message 2 of this conversation.'


@pytest.mark.parametrize("shape", COMPLETE_SHAPES)
async def test_each_shape_carries_a_tool_round_and_its_continuation(
    shape: str, client: ChatbaseClient, emulator: Emulator
) -> None:
    emulator.faults.stream_shape = shape
    events = await collect(client.chat("where is order 12?"))
    done = finish_of(events)
    assert done.reason == "tool-calls" and done.conversation_id
    [call] = [e for e in events if isinstance(e, ToolCall)]
    await client.submit_tool_result(done.conversation_id, call.tool_call_id, {"status": "shipped"})
    after = await collect(client.chat(None, conversation_id=done.conversation_id))
    assert text_of(after) == 'Here is what I found for order 12: {"status": "shipped"}'


async def test_an_error_event_mid_stream_raises_with_the_text_so_far(
    client: ChatbaseClient, emulator: Emulator
) -> None:
    emulator.faults.stream_shape = "error"
    seen: list[Any] = []
    with pytest.raises(StreamBroken) as caught:
        async for event in client.chat("tell me something rather long please"):
            seen.append(event)
    assert caught.value.code == "CHAT_STREAMING_ERROR" and STREAM_ERROR_TEXT in str(caught.value)
    assert caught.value.partial_text and caught.value.partial_text == text_of(seen)
    # The agent's history keeps what it sent, marked as broken off.
    [conversation] = emulator.state.conversations.values()
    answer = conversation.messages[-1]
    assert answer.finish_reason == "error" and answer.text == caught.value.partial_text


async def test_the_emulator_refuses_an_unknown_shape(session: aiohttp.ClientSession, base_url: str) -> None:
    control = base_url.replace("/api/v2", "/_emulator/faults")
    async with session.post(control, json={"stream_shape": "sideways"}) as resp:
        assert resp.status == 400 and "stream_shape" in (await resp.json())["error"]["message"]
    async with session.post(control, json={"stream_shape": "metadata-flat"}) as resp:
        assert (await resp.json())["data"]["stream_shape"] == "metadata-flat"


@pytest.mark.parametrize("shape", COMPLETE_SHAPES)
async def test_each_shape_continues_the_conversation_through_the_gateway(shape: str, echo_plugin: Any) -> None:
    emulator = Emulator()
    emulator.faults.stream_shape = shape
    async with running_gateway({"echo": {"type": "echo", "token": "t"}}, emulator=emulator) as gw, \
            aiohttp.ClientSession() as s:
        for n, text in enumerate(("hello", "and again")):
            async with s.post(f"{gw.url}/webhooks/echo", json={"id": f"m{n}", "user": "ann", "text": text},
                              headers={"X-Echo-Token": "t"}) as resp:
                assert resp.status == 200
            await gw.idle()
    assert [x["text"] for x in echo_plugin.SENT] == [
        'You said: "hello". This is message 1 of this conversation.',
        'You said: "and again". This is message 2 of this conversation.',
    ]
    assert len(emulator.state.conversations) == 1
