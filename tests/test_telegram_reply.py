"""Telegram's streaming reply against the fake Bot API: resume, leftovers, skipped edits, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from channels.telegram import TelegramChannel
from gateway.channel import Answer, Progress
from gateway.errors import ChannelPermanentError
from gateway.events import Identity, InboundEvent
from switchboard.testing import StubServices
from tests.fakes.telegram import BOT_ID, SECRET, FakeTelegram, TgMessage

CHAT = 42


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def channel(tg: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    async with aiohttp.ClientSession() as http:
        raw = {"type": "telegram", "bot_token": tg.token, "secret_token": SECRET, "api_base": tg.api_base,
               "edit_interval": 0.05}
        chan = TelegramChannel.from_config("tg", raw, StubServices(http))  # type: ignore[arg-type]
        assert isinstance(chan, TelegramChannel)
        async with chan:
            yield chan


def event() -> InboundEvent:
    return InboundEvent("tg", f"{BOT_ID}:1", Identity("telegram", str(BOT_ID), str(CHAT)), str(CHAT), "hi",
                        reply={"chat_id": CHAT})


def recording_progress(data: dict[str, Any] | None = None) -> tuple[Progress, list[dict[str, Any]]]:
    saved: list[dict[str, Any]] = []

    async def save(snapshot: dict[str, Any]) -> None:
        saved.append({k: list(v) if isinstance(v, list) else v for k, v in snapshot.items()})

    return Progress(data, save), saved


def posted(tg: FakeTelegram, text: str) -> TgMessage:
    """A message the bot posted earlier (before a crash)."""
    msg = TgMessage(CHAT, 900 + len(tg.messages), text, None, text)
    tg.messages[(CHAT, msg.message_id)] = msg
    return msg


async def test_a_resumed_turn_edits_its_message_instead_of_reposting(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    before = posted(tg, "Half an ans")
    progress, _ = recording_progress({"messages": [before.message_id]})
    reply = channel.open_reply(event(), progress)
    await reply.start()
    await reply.finish(Answer("Half an answer, now complete.", message_id="msg_1"))
    assert tg.calls_to("sendMessage") == [] and tg.calls_to("sendChatAction") == []
    [msg] = tg.chat(CHAT)
    assert msg.message_id == before.message_id and msg.text == "Half an answer, now complete."
    assert msg.reply_markup is not None


async def test_a_deleted_message_is_replaced_and_the_new_id_saved(channel: TelegramChannel, tg: FakeTelegram) -> None:
    gone = posted(tg, "old")
    gone.deleted = True
    progress, saved = recording_progress({"messages": [gone.message_id]})
    await channel.open_reply(event(), progress).finish(Answer("Fresh text."))
    [msg] = tg.chat(CHAT)
    assert msg.text == "Fresh text." and progress.data["messages"] == [msg.message_id]
    assert saved[-1]["messages"] == [msg.message_id]


async def test_a_shorter_resumed_answer_removes_leftover_messages(channel: TelegramChannel, tg: FakeTelegram) -> None:
    first, second = posted(tg, "part one"), posted(tg, "part two")
    progress, _ = recording_progress({"messages": [first.message_id, second.message_id]})
    await channel.open_reply(event(), progress).finish(Answer("All of it fits in one message."))
    assert [m.text for m in tg.chat(CHAT)] == ["All of it fits in one message."]
    assert progress.data["messages"] == [first.message_id]


async def test_message_ids_are_saved_as_soon_as_they_are_posted(channel: TelegramChannel, tg: FakeTelegram) -> None:
    progress, saved = recording_progress()
    reply = channel.open_reply(event(), progress)
    await reply.start()
    await reply.update("The first words")
    for _ in range(100):
        if len(saved) == 2:
            break
        await asyncio.sleep(0.01)
    [msg] = tg.chat(CHAT)
    # the intent first ("about to post message 1"), then the id in place of the intent
    assert [s["messages"] for s in saved] == [[], [msg.message_id]] and "sending" not in saved[1]
    await reply.finish(Answer("The first words and the rest."))
    assert tg.chat(CHAT)[0].text == "The first words and the rest." and len(tg.calls_to("sendMessage")) == 1


async def test_unchanged_text_is_never_sent_again(channel: TelegramChannel, tg: FakeTelegram) -> None:
    reply = channel.open_reply(event(), Progress())
    await reply.start()
    for _ in range(3):
        await reply.update("Same words")
        await asyncio.sleep(0.1)
    await reply.finish(Answer("Same words"))  # no message id: no buttons, nothing to change
    assert len(tg.calls_to("sendMessage")) == 1
    assert tg.calls_to("editMessageText") == []
    assert not any(c.status == 400 for c in tg.calls)


async def test_typing_stops_with_the_first_words(channel: TelegramChannel, tg: FakeTelegram) -> None:
    reply = channel.open_reply(event(), Progress())
    await reply.start()
    for _ in range(100):
        if tg.calls_to("sendChatAction"):
            break
        await asyncio.sleep(0.01)
    assert tg.calls_to("sendChatAction")[0]["action"] == "typing"
    await reply.update("Here")
    await reply.finish(Answer("Here we go."))
    typing_calls = len(tg.calls_to("sendChatAction"))
    await asyncio.sleep(0.1)
    assert len(tg.calls_to("sendChatAction")) == typing_calls


async def test_a_failure_replaces_the_partial_answer_with_the_apology(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    reply = channel.open_reply(event(), Progress())
    await reply.start()
    await reply.update("Partial answer that will never")
    await reply.fail("Sorry, I can't answer right now.")
    assert [m.text for m in tg.chat(CHAT)] == ["Sorry, I can't answer right now."]


async def test_a_refusal_other_than_markup_is_permanent(channel: TelegramChannel, tg: FakeTelegram) -> None:
    tg.fail_next("sendMessage", 400, "Bad Request: chat not found")
    with pytest.raises(ChannelPermanentError, match=r"(?i)chat not found"):
        await channel.open_reply(event(), Progress()).finish(Answer("hello"))


async def test_a_blocked_bot_is_permanent(channel: TelegramChannel, tg: FakeTelegram) -> None:
    tg.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    with pytest.raises(ChannelPermanentError, match="blocked"):
        await channel.open_reply(event(), Progress()).finish(Answer("hello"))
