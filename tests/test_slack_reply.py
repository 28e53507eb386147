"""Slack delivery against the fake Web API: growing message, long answers, resumes, 429s, buttons."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from channels.slack import SlackChannel
from gateway.channel import Answer, Progress
from gateway.errors import ChannelPermanentError
from gateway.events import Identity, InboundEvent
from switchboard.testing import StubServices, wait_until
from tests.fakes.slack import SECRET, TEAM, FakeSlack

Factory = Callable[..., SlackChannel]



@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def make(slack: FakeSlack) -> AsyncIterator[Factory]:
    opened: list[SlackChannel] = []
    async with aiohttp.ClientSession() as http:
        services: Any = StubServices(http)

        def factory(**overrides: Any) -> SlackChannel:
            raw = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET,
                   "api_base": slack.api_base, "update_interval": 0, **overrides}
            chan = SlackChannel.from_config("slack", raw, services)
            assert isinstance(chan, SlackChannel)
            opened.append(chan)
            return chan

        yield factory
        for chan in opened:
            await chan.shutdown()


async def started(make: Factory, **overrides: Any) -> SlackChannel:
    chan = make(**overrides)
    await chan.initialize()
    return chan


EVENT = InboundEvent(
    channel="slack", key="Ev1", identity=Identity("slack", TEAM, "U0001"), scope="C0001:100.1",
    text="hi", reply={"channel": "C0001", "thread_ts": "100.1", "ts": "100.1"},
)


def progress_for(saved: list[dict[str, Any]], data: dict[str, Any] | None = None) -> Progress:
    async def save(d: dict[str, Any]) -> None:
        saved.append(json.loads(json.dumps(d)))  # what a durable store would keep

    return Progress(data if data is not None else {}, save)


def sentences(n: int) -> str:
    paragraphs = []
    for p in range(n // 10):
        paragraphs.append(" ".join(f"Sentence {p * 10 + i} says something useful here." for i in range(10)))
    return "\n\n".join(paragraphs)


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: json.loads(e["value"]) for b in blocks if b["type"] == "actions" for e in b["elements"]}


async def test_answer_grows_in_one_message_and_ends_with_buttons(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make)
    reply = chan.open_reply(EVENT, progress_for([]))
    await reply.start()
    [placeholder] = slack.thread("C0001", "100.1")
    assert "thinking" in placeholder.text
    await reply.update("Hello")
    await slack.wait_for(lambda: slack.thread("C0001", "100.1")[0].text == "Hello")
    await reply.update("Hello there, friend")
    await slack.wait_for(lambda: slack.thread("C0001", "100.1")[0].text == "Hello there, friend")
    await reply.finish(Answer("Hello there, friend.", "msg_1", "conv_1"))
    [final] = slack.thread("C0001", "100.1")
    assert final.ts == placeholder.ts and final.text == "Hello there, friend."
    assert buttons(final.blocks) == {
        action: {"m": "msg_1", "c": "conv_1", "s": "C0001:100.1"}
        for action in ("switchboard_feedback_positive", "switchboard_feedback_negative", "switchboard_retry")
    }
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_edits_are_throttled(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make, update_interval=60)
    reply = chan.open_reply(EVENT, progress_for([]))
    await reply.start()
    await wait_until(lambda: slack.calls_to("chat.postMessage"), "the placeholder of an answer that is not quick")
    text = ""
    for i in range(40):
        text += f"word{i} "
        await reply.update(text)
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert slack.calls_to("chat.update") == []  # the interval has not passed: no edit yet
    await reply.finish(Answer(text.strip(), "m", "c"))
    assert len(slack.calls_to("chat.update")) == 1
    assert slack.thread("C0001", "100.1")[0].text == text.strip()


async def test_a_quick_answer_is_posted_once_without_placeholder_and_its_intent_saved_first(
    make: Factory, slack: FakeSlack
) -> None:
    chan = await started(make, update_interval=1)
    saved: list[dict[str, Any]] = []
    reply = chan.open_reply(EVENT, progress_for(saved))
    await reply.start()
    await reply.update("All")
    await reply.finish(Answer("All done.", "m", "c"))
    assert [c.method for c in slack.calls if c.method.startswith("chat.")] == ["chat.postMessage"]
    assert [m.text for m in slack.thread("C0001", "100.1")] == ["All done."]
    # Crash-safe like any post: "about to post part 0" was saved before the call. Its id is not
    # saved on its own (the finish drops the progress): it rides on the next save, if any.
    assert [s["sending"]["part"] for s in saved] == [0]
    assert "sending" not in reply.progress.data
    assert reply.progress.data["slack"]["ts"] == [slack.thread("C0001", "100.1")[0].ts]
    await reply.progress.flush()  # a turn that must wait first writes it
    assert saved[-1]["slack"]["ts"] == [slack.thread("C0001", "100.1")[0].ts] and "sending" not in saved[-1]


async def test_a_slow_answer_gets_its_placeholder_after_the_quick_window(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make, update_interval=1)
    reply = chan.open_reply(EVENT, progress_for([]))
    await reply.start()
    assert slack.calls_to("chat.postMessage") == []  # not yet: the answer may still be quick
    await wait_until(lambda: slack.calls_to("chat.postMessage"), "the placeholder")
    assert [m.text for m in slack.thread("C0001", "100.1")] == [chan.settings.thinking_text]
    await reply.finish(Answer("Done after a while.", "m", "c"))
    assert [m.text for m in slack.thread("C0001", "100.1")] == ["Done after a while."]
    assert len(slack.calls_to("chat.postMessage")) == 1 and len(slack.calls_to("chat.update")) == 1


async def test_markdown_is_rendered_as_mrkdwn(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make)
    reply = chan.open_reply(EVENT, progress_for([]))
    await reply.start()
    await reply.finish(Answer("**Bold** and [docs](https://x.io) for a < b & c", "m", "c"))
    [final] = slack.thread("C0001", "100.1")
    assert "*Bold*" in final.text and "**" not in final.text
    assert "<https://x.io|docs>" in final.text
    assert "a &lt; b &amp; c" in final.text


async def test_long_answer_continues_in_more_messages_of_the_thread(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make)
    reply = chan.open_reply(EVENT, progress_for([]))
    text = sentences(200)
    assert len(text) > 6000
    await reply.start()
    for end in range(500, len(text) + 500, 500):
        await reply.update(text[:end])
        await asyncio.sleep(0.005)
    await reply.finish(Answer(text, "msg_2", "conv_2"))
    messages = slack.thread("C0001", "100.1")
    assert len(messages) >= 2
    assert all(len(m.text) <= 3900 for m in messages)
    assert " ".join(m.text for m in messages).split() == text.split()  # nothing lost, nothing twice
    assert [bool(buttons(m.blocks)) for m in messages] == [False] * (len(messages) - 1) + [True]
    assert len(slack.calls_to("chat.postMessage", ok_only=True)) == len(messages)


async def test_a_resumed_turn_edits_what_was_posted(make: Factory, slack: FakeSlack) -> None:
    saved: list[dict[str, Any]] = []
    first = (await started(make)).open_reply(EVENT, progress_for(saved))
    await first.start()
    await first.update("Partial answer")
    await slack.wait_for(lambda: slack.thread("C0001", "100.1")[0].text == "Partial answer")
    # The gateway dies here; the journal has the saved progress, a new process resumes the turn.
    resumed = (await started(make)).open_reply(EVENT, progress_for([], saved[-1]))
    await resumed.start()
    await resumed.finish(Answer("Partial answer, completed.", "m", "c"))
    [only] = slack.thread("C0001", "100.1")
    assert only.text == "Partial answer, completed."
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_rate_limit_mid_stream_is_waited_out_without_losing_text(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make)
    reply = chan.open_reply(EVENT, progress_for([]))
    await reply.start()
    slack.fail_next("chat.update", retry_after=1)
    await reply.update("First words")
    await slack.wait_for(lambda: len(slack.calls_to("chat.update")) == 1)
    await reply.update("First words and more words")
    await reply.finish(Answer("First words and more words, all of them.", "m", "c"))
    limited, *later = slack.calls_to("chat.update")
    assert limited.status == 429 and later
    assert all(call.at - limited.at >= 1.0 for call in later)  # Retry-After was honoured
    assert slack.thread("C0001", "100.1")[0].text == "First words and more words, all of them."


async def test_rate_limited_final_edit_is_retried(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make)
    reply = chan.open_reply(EVENT, progress_for([]))
    await reply.start()
    slack.fail_next("chat.update", retry_after=0, count=2)
    await reply.finish(Answer("Done.", "m", "c"))
    assert [c.status for c in slack.calls_to("chat.update")] == [429, 429, 200]
    assert slack.thread("C0001", "100.1")[0].text == "Done."


async def test_failure_keeps_the_partial_text_and_apologises(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make)
    reply = chan.open_reply(EVENT, progress_for([]))
    await reply.start()
    await reply.update("Half an ans")
    await reply.fail("Sorry, I can't answer right now.")
    [final] = slack.thread("C0001", "100.1")
    assert final.text.startswith("Half an ans") and final.text.endswith("Sorry, I can't answer right now.")
    assert not buttons(final.blocks)


async def test_a_dm_is_answered_at_the_top_level(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make)
    dm = InboundEvent(channel="slack", key="Ev2", identity=Identity("slack", TEAM, "U0001"), scope="D0001",
                      text="hi", reply={"channel": "D0001", "thread_ts": None, "ts": "5.5"})
    reply = chan.open_reply(dm, progress_for([]))
    await reply.start()
    await reply.finish(Answer("Hi!", "m", "c"))
    assert [m.text for m in slack.thread("D0001", None)] == ["Hi!"]


async def test_slack_refusal_is_permanent(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make)
    slack.fail_next("chat.postMessage", status=200, error="channel_not_found", retry_after=None)
    with pytest.raises(ChannelPermanentError, match="channel_not_found"):
        await chan.open_reply(EVENT, progress_for([])).start()


async def test_feedback_choice_is_shown_under_the_answer(make: Factory, slack: FakeSlack) -> None:
    chan = await started(make)
    reply = chan.open_reply(EVENT, progress_for([]))
    await reply.start()
    await reply.finish(Answer("An answer.", "msg_5", "conv_5"))
    [answer] = slack.thread("C0001", "100.1")
    click = InboundEvent(
        channel="slack", key="act", identity=Identity("slack", TEAM, "U0002"), scope=EVENT.scope,
        kind="feedback", reply={"channel": "C0001", "ts": answer.ts, "thread_ts": "100.1",
                                "text": answer.text, "blocks": answer.blocks},
        meta={"message_id": "msg_5", "feedback": "positive"},
    )
    await chan.feedback_saved(click)
    [shown] = slack.thread("C0001", "100.1")
    notes = [e["text"] for b in shown.blocks if b["type"] == "context" for e in b["elements"]]
    assert notes == ["👍 Feedback from <@U0002> recorded. Thank you!"]
    assert buttons(shown.blocks)  # still there, to change one's mind
