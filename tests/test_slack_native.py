"""``streaming = "native"``: chat.startStream / appendStream / stopStream, with its fallbacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from channels.slack import SlackChannel
from gateway.channel import Answer, Progress
from gateway.events import Identity, InboundEvent
from switchboard.testing import StubServices
from tests.fakes.slack import SECRET, TEAM, FakeSlack

EVENT = InboundEvent(
    channel="slack", key="Ev1", identity=Identity("slack", TEAM, "U0001"), scope="C0001:100.1",
    text="hi", reply={"channel": "C0001", "thread_ts": "100.1", "ts": "100.1"},
)



@pytest.fixture
async def setup() -> AsyncIterator[tuple[FakeSlack, SlackChannel]]:
    async with FakeSlack() as slack, aiohttp.ClientSession() as http:
        raw = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_base,
               "streaming": "native", "update_interval": 0, "max_message_chars": 1000}
        chan = SlackChannel.from_config("slack", raw, StubServices(http))  # type: ignore[arg-type]
        assert isinstance(chan, SlackChannel)
        async with chan:
            yield slack, chan


def actions(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def test_answer_streams_natively_and_ends_with_buttons(setup: Any) -> None:
    slack, chan = setup
    reply = chan.open_reply(EVENT, Progress())
    await reply.start()
    [start] = slack.calls_to("chat.startStream")
    assert start.params["thread_ts"] == "100.1" and start.params["recipient_user_id"] == "U0001"
    await reply.update("Hello **wor")
    await slack.wait_for(lambda: bool(slack.calls_to("chat.appendStream")))
    await reply.update("Hello **world**, here")
    await reply.finish(Answer("Hello **world**, here you go.", "msg_1", "conv_1"))
    [message] = slack.thread("C0001", "100.1")
    assert message.text == "Hello **world**, here you go."  # Slack renders the Markdown itself
    assert not message.streaming
    assert actions(message.blocks) == ["switchboard_feedback_positive", "switchboard_feedback_negative",
                                       "switchboard_retry"]
    assert json.loads(message.blocks[0]["elements"][0]["value"])["m"] == "msg_1"
    assert slack.calls_to("chat.postMessage") == [] and slack.calls_to("chat.update") == []


async def test_long_answer_continues_in_new_streams(setup: Any) -> None:
    slack, chan = setup
    text = "\n\n".join(" ".join(f"Line {p}.{i} of a long answer." for i in range(12)) for p in range(20))
    reply = chan.open_reply(EVENT, Progress())
    await reply.start()
    for end in range(300, len(text) + 300, 300):
        await reply.update(text[:end])
        await asyncio.sleep(0.002)
    await reply.finish(Answer(text, "msg_2", "conv_2"))
    messages = slack.thread("C0001", "100.1")
    assert len(messages) >= len(text) // 1000
    assert all(len(m.text) <= 1000 for m in messages)
    assert "".join(m.text for m in messages) == text
    assert [bool(actions(m.blocks)) for m in messages] == [False] * (len(messages) - 1) + [True]


async def test_an_answer_that_changed_is_rewritten_with_chat_update(setup: Any) -> None:
    slack, chan = setup
    reply = chan.open_reply(EVENT, Progress())
    await reply.start()
    await reply.update("First attempt that broke")
    await slack.wait_for(lambda: bool(slack.calls_to("chat.appendStream")))
    await reply.finish(Answer("A different, complete answer.", "msg_3", "conv_3"))
    [message] = slack.thread("C0001", "100.1")
    assert message.text == "A different, complete answer."
    assert actions(message.blocks)


async def test_a_stream_slack_closed_falls_back(setup: Any) -> None:
    slack, chan = setup
    reply = chan.open_reply(EVENT, Progress())
    await reply.start()
    slack.fail_next("chat.appendStream", status=200, error="message_not_in_streaming_state", retry_after=None)
    await reply.finish(Answer("Still delivered.", "m", "c"))
    [message] = slack.thread("C0001", "100.1")
    assert message.text == "Still delivered."


async def test_a_top_level_dm_uses_a_growing_message(setup: Any) -> None:
    slack, chan = setup
    dm = InboundEvent(channel="slack", key="Ev2", identity=Identity("slack", TEAM, "U0001"), scope="D0001",
                      text="hi", reply={"channel": "D0001", "thread_ts": None, "ts": "5.5"})
    reply = chan.open_reply(dm, Progress())
    await reply.start()
    await reply.finish(Answer("Hi!", "m", "c"))
    assert [m.text for m in slack.thread("D0001", None)] == ["Hi!"]
    assert slack.calls_to("chat.startStream") == []


async def test_a_resumed_turn_rewrites_the_streamed_message(setup: Any) -> None:
    slack, chan = setup
    data: dict[str, Any] = {}
    first = chan.open_reply(EVENT, Progress(data))
    await first.start()
    await first.update("Partial")
    await slack.wait_for(lambda: bool(slack.calls_to("chat.appendStream")))
    # The process dies; the journal kept the progress. The resumed turn must not start a new stream.
    resumed = chan.open_reply(EVENT, Progress(json.loads(json.dumps(data))))
    await resumed.start()
    await resumed.finish(Answer("Partial, then complete.", "m", "c"))
    [message] = slack.thread("C0001", "100.1")
    assert message.text == "Partial, then complete." and not message.streaming
    assert len(slack.calls_to("chat.startStream")) == 1
