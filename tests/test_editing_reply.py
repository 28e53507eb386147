"""EditingReply on its own, against an in-memory chat that can post, edit and delete messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from gateway.channel import Answer, Channel, ChannelSettings, Progress
from gateway.editing import EditingReply, EditLimits
from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited, StoreUnavailable
from gateway.events import Identity, InboundEvent
from switchboard.testing import StubServices

EVENT = InboundEvent("chat", "ev1", Identity("chat", "", "u1"), "room", "hi")
LIMITS = EditLimits(max_length=60, interval=0.0, empty_text="(empty)")


@dataclass
class Call:
    op: str  # post / edit / delete
    message: int
    text: str
    at: float


@dataclass
class MemoryChat:
    """The in-memory chat: message id → text, every call recorded, failures on demand."""

    limits: EditLimits = LIMITS
    with_placeholder: bool = True
    messages: dict[int, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, list[Exception]] = field(default_factory=dict)
    gate: asyncio.Event | None = None  # when set, edits wait for it (an edit in flight)
    waiting: int = 0
    next_id: int = 100

    def placeholder(self) -> str | None:
        return "thinking…" if self.with_placeholder else None

    def render(self, markdown: str, answer: Answer | None) -> str:
        return markdown + (f" [rate {answer.message_id}]" if answer and answer.message_id else "")

    def fail_next(self, op: str, *errors: Exception) -> None:
        self.failures.setdefault(op, []).extend(errors)

    def _record(self, op: str, message: int, text: str) -> None:
        self.calls.append(Call(op, message, text, asyncio.get_running_loop().time()))
        if self.failures.get(op):
            raise self.failures[op].pop(0)

    async def post(self, index: int, content: str) -> int:
        self.next_id += 1
        self._record("post", self.next_id, content)
        self.messages[self.next_id] = content
        return self.next_id

    async def edit(self, message: int, content: str) -> bool:
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
        self._record("edit", message, content)
        if message not in self.messages:
            return False
        self.messages[message] = content
        return True

    async def delete(self, message: int) -> None:
        self._record("delete", message, "")
        del self.messages[message]

    def ops(self, op: str) -> list[Call]:
        return [c for c in self.calls if c.op == op]

    def shown(self) -> list[str]:
        return [self.messages[i] for i in sorted(self.messages)]


class ChatChannel(Channel):
    type = "memory-chat"
    typings = 0

    async def typing(self, event: InboundEvent) -> None:
        self.typings += 1

    def describe(self) -> str:
        return "an in-memory chat"


def make_reply(
    chat: MemoryChat, data: dict[str, Any] | None = None, saver: Callable[[dict[str, Any]], Any] | None = None
) -> tuple[EditingReply[int, str], list[dict[str, Any]]]:
    saved: list[dict[str, Any]] = []

    async def save(snapshot: dict[str, Any]) -> None:
        if saver is not None:
            await saver(snapshot)
        saved.append(json.loads(json.dumps(snapshot)))  # what a durable store would keep

    progress = Progress(data if data is not None else {}, save)
    channel = ChatChannel("chat", ChannelSettings(type="memory-chat"), StubServices(None))  # type: ignore[arg-type]
    return EditingReply(channel, EVENT, progress, chat, progress.data.setdefault("ids", [])), saved


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def words(texts: list[str]) -> list[str]:
    return " ".join(texts).split()


async def test_the_placeholder_grows_into_the_answer_and_its_id_is_saved() -> None:
    chat = MemoryChat()
    reply, saved = make_reply(chat)
    await reply.start()
    # "About to post message 1" is saved before the post, its id right after (and the intent dropped).
    assert chat.shown() == ["thinking…"] and [s["ids"] for s in saved] == [[], [101]]
    assert saved[0]["sending"]["part"] == 0 and "sending" not in saved[1]
    await reply.update("Hello")
    await until(lambda: chat.shown() == ["Hello"])
    await reply.finish(Answer("Hello there.", "m1"))
    assert chat.shown() == ["Hello there. [rate m1]"] and len(chat.ops("post")) == 1


async def test_text_arriving_during_an_edit_is_coalesced_into_the_next_one() -> None:
    chat = MemoryChat()
    reply, _ = make_reply(chat)
    await reply.start()
    chat.gate = asyncio.Event()
    await reply.update("one")
    await until(lambda: chat.waiting == 1)  # the first edit is in flight
    for text in ("one two", "one two three", "one two three four"):
        await reply.update(text)
    chat.gate.set()
    await until(lambda: chat.shown() == ["one two three four"])
    assert [c.text for c in chat.ops("edit")] == ["one", "one two three four"]
    await reply.close()


async def test_interim_edits_wait_for_the_interval_and_the_final_one_does_not() -> None:
    chat = MemoryChat(limits=replace(LIMITS, interval=60))
    reply, _ = make_reply(chat)
    await reply.start()
    for i in range(20):
        await reply.update(f"word {i}")
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert chat.ops("edit") == []
    await reply.finish(Answer("word 19 and the end"))
    assert [c.text for c in chat.ops("edit")] == ["word 19 and the end"]


async def test_edits_that_change_nothing_are_skipped() -> None:
    chat = MemoryChat()
    reply, _ = make_reply(chat)
    await reply.start()
    for _ in range(3):
        await reply.update("Same words")
        await until(lambda: chat.shown() == ["Same words"])
    await reply.finish(Answer("Same words"))
    assert [c.text for c in chat.ops("edit")] == ["Same words"]


async def test_a_resumed_turn_edits_the_saved_messages_instead_of_posting() -> None:
    chat = MemoryChat(messages={7: "Partial ans"})
    reply, _ = make_reply(chat, {"ids": [7]})
    await reply.start()
    await reply.finish(Answer("Partial answer, completed."))
    assert chat.ops("post") == [] and chat.messages == {7: "Partial answer, completed."}


async def test_a_long_answer_continues_in_new_messages_saved_as_they_are_posted() -> None:
    chat = MemoryChat()
    reply, saved = make_reply(chat)
    text = " ".join(f"Sentence {i} is here." for i in range(30))
    await reply.start()
    for end in range(40, len(text) + 40, 40):
        await reply.update(text[:end])
        await asyncio.sleep(0.002)
    await reply.finish(Answer(text, "m2"))
    shown = chat.shown()
    assert len(shown) > 5 and all(len(t) <= 60 for t in shown[:-1])
    assert words(shown) == [*text.split(), "[rate", "m2]"]  # nothing lost, nothing twice
    assert saved[-1]["ids"] == sorted(chat.messages)


async def test_leftovers_are_deleted_when_the_final_answer_is_shorter() -> None:
    chat = MemoryChat()
    reply, saved = make_reply(chat)
    await reply.start()
    await reply.update("A first attempt that runs long. " * 5)
    await until(lambda: len(chat.messages) >= 3)
    await reply.finish(Answer("Short after all."))
    assert chat.shown() == ["Short after all."] and len(chat.ops("delete")) >= 2
    assert saved[-1]["ids"] == list(chat.messages)


async def test_a_message_someone_deleted_is_posted_anew() -> None:
    chat = MemoryChat()
    reply, saved = make_reply(chat, {"ids": [55]})  # 55 no longer exists
    await reply.finish(Answer("Fresh text."))
    assert chat.shown() == ["Fresh text."] and saved[-1]["ids"] == list(chat.messages)


async def test_a_rate_limited_interim_edit_waits_for_retry_after_and_catches_up() -> None:
    chat = MemoryChat()
    reply, _ = make_reply(chat)
    await reply.start()
    chat.fail_next("edit", ChannelRateLimited("slow down", 0.2))
    await reply.update("First words")
    await until(lambda: len(chat.ops("edit")) == 1)
    await reply.update("First words and more")
    await until(lambda: chat.shown() == ["First words and more"])
    limited, later = chat.ops("edit")
    assert later.at - limited.at >= 0.2  # Retry-After honoured
    await reply.close()


async def test_a_rate_limited_final_delivery_is_waited_out() -> None:
    chat = MemoryChat()
    reply, _ = make_reply(chat)
    await reply.start()
    chat.fail_next("edit", ChannelRateLimited("slow down", 0.01), ChannelRateLimited("slow down", 0.01))
    await reply.finish(Answer("Done."))
    assert chat.shown() == ["Done."] and len(chat.ops("edit")) == 3


async def test_a_rate_limit_longer_than_the_reply_waits_goes_to_the_delivery_policy() -> None:
    chat = MemoryChat(limits=replace(LIMITS, max_wait=5))
    reply, _ = make_reply(chat)
    await reply.start()
    chat.fail_next("edit", ChannelRateLimited("slow down", 30))
    with pytest.raises(ChannelRateLimited):
        await reply.finish(Answer("Done."))
    await reply.finish(Answer("Done."))  # the policy's retry continues from the saved ids
    assert chat.shown() == ["Done."] and len(chat.ops("post")) == 1


async def test_failure_keeps_or_replaces_the_partial_answer_as_the_channel_wants() -> None:
    for keep, expected in ((True, "Half an ans\n\nSorry."), (False, "Sorry.")):
        chat = MemoryChat(limits=replace(LIMITS, keep_partial=keep, max_length=100))
        reply, _ = make_reply(chat)
        await reply.start()
        await reply.update("Half an ans")
        await reply.fail("Sorry.")
        assert chat.shown() == [expected]


async def test_an_empty_answer_shows_the_channels_empty_text() -> None:
    chat = MemoryChat()
    reply, _ = make_reply(chat)
    await reply.start()
    await reply.finish(Answer("   "))
    assert chat.shown() == ["(empty)"]


async def test_without_a_placeholder_typing_shows_until_the_first_words() -> None:
    chat = MemoryChat(with_placeholder=False, limits=replace(LIMITS, typing_every=0.01))
    reply, _ = make_reply(chat)
    await reply.start()
    channel = reply.channel
    assert isinstance(channel, ChatChannel)
    await until(lambda: channel.typings >= 2)
    assert chat.calls == []
    await reply.update("Here")
    typed = channel.typings
    await until(lambda: chat.shown() == ["Here"])
    await asyncio.sleep(0.05)
    assert channel.typings == typed
    await reply.finish(Answer("Here we go."))
    assert chat.shown() == ["Here we go."]


def reply_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(("editing-", "typing-")) and not t.done()]


async def test_closing_a_turn_that_never_finished_stops_every_background_task() -> None:
    chat = MemoryChat(limits=replace(LIMITS, interval=60))
    reply, _ = make_reply(chat)
    await reply.start()
    await reply.update("words waiting for the interval")
    typing, _ = make_reply(MemoryChat(with_placeholder=False))
    await typing.start()
    assert len(reply_tasks()) == 2
    await reply.close()
    await typing.close()
    assert reply_tasks() == []


async def test_a_store_outage_mid_stream_posts_nothing_new_and_leaves_no_task() -> None:
    outage = False

    async def saver(_: dict[str, Any]) -> None:
        if outage:
            raise StoreUnavailable("redis is down")

    chat = MemoryChat(limits=replace(LIMITS, max_length=20))
    reply, _ = make_reply(chat, saver=saver)
    await reply.start()
    outage = True
    await reply.update("This text needs two messages.")
    await until(lambda: chat.shown() == ["This text needs two"])  # edits need no save
    # The second message is never posted: "about to post it" cannot be saved, and a post whose
    # intent is not durable could become a duplicate after a crash.
    with pytest.raises(StoreUnavailable):  # the final delivery meets the outage and reports it
        await reply.finish(Answer("This text needs two messages. And then a third one."))
    await reply.close()
    assert reply_tasks() == []
    assert len(chat.ops("post")) == 1
    assert reply.progress.data["ids"] == sorted(chat.messages)  # known, to be saved once the store is back


async def test_an_interim_refusal_stops_interim_edits_and_the_final_one_still_lands() -> None:
    chat = MemoryChat()
    reply, _ = make_reply(chat)
    await reply.start()
    chat.fail_next("edit", ChannelPermanentError("refused"))
    await reply.update("One")
    await until(lambda: len(chat.ops("edit")) == 1)
    await reply.update("One two")
    await asyncio.sleep(0.05)
    assert len(chat.ops("edit")) == 1
    await reply.finish(Answer("One two three."))
    assert chat.shown() == ["One two three."]


async def test_a_placeholder_the_platform_will_not_edit_is_replaced_not_left_behind() -> None:
    chat = MemoryChat()
    reply, saved = make_reply(chat)
    await reply.start()
    [placeholder] = chat.messages
    chat.fail_next("edit", ChannelPermanentError("edit window closed"))
    await reply.finish(Answer("The answer."))
    assert chat.shown() == ["The answer."] and placeholder not in chat.messages
    assert saved[-1]["ids"] == list(chat.messages) and "replaced" not in saved[-1]


async def test_a_replaced_message_a_crash_left_is_removed_on_resume() -> None:
    chat = MemoryChat(messages={1: "thinking…", 2: "The answer."})
    reply, _ = make_reply(chat, {"ids": [2], "replaced": [1]})
    await reply.finish(Answer("The answer."))
    assert chat.shown() == ["The answer."] and "replaced" not in reply.progress.data


async def test_a_transient_error_on_a_leftover_delete_is_retried_by_the_policy() -> None:
    chat = MemoryChat(messages={1: "a", 2: "b"})
    reply, _ = make_reply(chat, {"ids": [1, 2]})
    chat.fail_next("delete", ChannelError("HTTP 503"))
    with pytest.raises(ChannelError):
        await reply.finish(Answer("only one"))
    await reply.finish(Answer("only one"))
    assert chat.shown() == ["only one"] and reply.progress.data["ids"] == [1]
