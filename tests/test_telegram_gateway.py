"""Telegram end to end: a real gateway, the Chatbase emulator and the fake Bot API."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from adapters.emulator import Emulator
from adapters.emulator.brain import MARKDOWN_SAMPLE
from channels.telegram import TelegramChannel
from gateway.markdown import to_plain
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes.telegram import (
    BOT_ID,
    SECRET,
    USERNAME,
    FakeTelegram,
    TgMessage,
    callback_update,
    post_update,
    text_update,
)

CHAT = 4242


@asynccontextmanager
async def gateway(
    emulator: Emulator | None = None, **extra: Any
) -> AsyncIterator[tuple[GatewayUnderTest, FakeTelegram]]:
    async with FakeTelegram() as tg:
        config = {"type": "telegram", "bot_token": tg.token, "secret_token": SECRET, "api_base": tg.api_base,
                  "edit_interval": 0.05, **extra}
        async with running_gateway({"tg": config}, emulator=emulator) as gw:
            yield gw, tg


async def say(gw: GatewayUnderTest, text: str, **kw: Any) -> int:
    update = text_update(text, chat_id=kw.pop("chat_id", CHAT), user_id=kw.pop("user_id", CHAT), **kw)
    resp = await post_update(f"{gw.url}/webhooks/tg", update)
    assert resp.status == 200
    return int(update["update_id"])


def chats(gw: GatewayUnderTest) -> list[str]:
    return [r.json["message"] for r in gw.emulator.requests if r.path.endswith("/chat") and r.json.get("message")]


def last(tg: FakeTelegram, chat: int = CHAT) -> TgMessage:
    return tg.chat(chat)[-1]


async def test_a_private_message_is_answered_in_one_message_with_buttons() -> None:
    async with gateway() as (gw, tg):
        await say(gw, "hello there")
        await gw.idle()
        [answer] = tg.chat(CHAT)
        assert answer.text == 'You said: "hello there". This is message 1 of this conversation.'
        assert answer.parse_mode == "HTML"
        buttons = answer.reply_markup["inline_keyboard"][0]
        assert [b["text"] for b in buttons] == ["👍", "👎"]
        assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)
        assert chats(gw) == ["hello there"]
        first_action = next(i for i, c in enumerate(tg.calls) if c.method == "sendChatAction")
        first_send = next(i for i, c in enumerate(tg.calls) if c.method == "sendMessage")
        assert first_action < first_send  # typing shows before any text


async def test_a_retried_update_is_answered_once() -> None:
    async with gateway() as (gw, tg):
        update = text_update("only once please", chat_id=CHAT, user_id=CHAT)
        for _ in range(3):  # Telegram redelivers when it missed our 200
            assert (await post_update(f"{gw.url}/webhooks/tg", update)).status == 200
        await gw.idle()
        assert chats(gw) == ["only once please"]
        assert len(tg.calls_to("sendMessage")) == 1


async def test_a_wrong_secret_is_refused_and_never_reaches_the_agent() -> None:
    async with gateway() as (gw, tg):
        for secret in ("guess", None):
            resp = await post_update(f"{gw.url}/webhooks/tg", text_update("hi", chat_id=CHAT), secret=secret)
            assert resp.status == 403
        await gw.idle()
        assert chats(gw) == [] and tg.calls_to("sendMessage") == []


async def test_groups_answer_mentions_and_replies_only() -> None:
    group = -1001234
    async with gateway() as (gw, tg):
        await say(gw, "anyone for lunch?", chat_id=group, user_id=7, chat_type="supergroup")
        await gw.idle()
        assert chats(gw) == [] and tg.chat(group) == []
        await say(gw, f"@{USERNAME} what is 2+2?", chat_id=group, user_id=7, chat_type="supergroup", message_id=55)
        await gw.idle()
        assert chats(gw) == ["what is 2+2?"]
        [answer] = tg.chat(group)
        assert answer.reply_to == 55  # answers the message that asked
        await say(gw, "and 3+3?", chat_id=group, user_id=7, chat_type="supergroup", reply_to_bot=True)
        await gw.idle()
        assert chats(gw)[-1] == "and 3+3?"
        assert "message 2 of this conversation" in last(tg, group).text


@pytest.mark.slow
async def test_a_long_answer_streams_into_messages_under_4096() -> None:
    async with gateway(Emulator(token_delay=0.0005), edit_interval=0.1) as (gw, tg):
        await say(gw, "long 9000")
        await gw.idle(timeout=30)
        messages = tg.chat(CHAT)
        assert len(messages) == 3
        assert all(len(m.text) <= 4096 for m in messages)
        joined = " ".join(m.text for m in messages)
        numbers = [int(n) for n in re.findall(r"This is sentence (\d+) of the long answer\.", joined)]
        assert numbers == list(range(1, len(numbers) + 1)) and len(joined) >= 9000  # nothing lost or repeated
        assert len(tg.calls_to("sendMessage")) == 3  # grown by edits, never reposted
        assert sum(m.edits for m in messages) >= 1
        assert messages[-1].reply_markup and not messages[0].reply_markup  # buttons under the end only


async def test_markdown_becomes_telegram_html_that_telegram_accepts() -> None:
    async with gateway() as (gw, tg):
        await say(gw, "show me markdown")
        await gw.idle()
        answer = last(tg)
        assert answer.parse_mode == "HTML"
        assert "<b>" in answer.source and "**" not in answer.text
        assert "<" in answer.text and "&" in answer.text  # escaped in the source, shown literally


async def test_html_telegram_cannot_parse_falls_back_to_plain_text() -> None:
    async with gateway() as (gw, tg):
        for method in ("sendMessage", "editMessageText"):
            tg.fail_next(method, 400, "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte "
                         "offset 3", when_html=True, count=1000)
        await say(gw, "show me markdown")
        await gw.idle()
        [answer] = tg.chat(CHAT)
        assert answer.parse_mode is None
        assert answer.text == to_plain(MARKDOWN_SAMPLE.strip())
        refused = [c for c in tg.calls if c.status == 400]
        assert refused and all(c.params.get("parse_mode") == "HTML" for c in refused)


async def test_feedback_buttons_reach_the_agent_and_mark_the_choice() -> None:
    async with gateway() as (gw, tg):
        await say(gw, "rate me")
        await gw.idle()
        answer = last(tg)
        thumbs_up = answer.reply_markup["inline_keyboard"][0][0]["callback_data"]
        resp = await post_update(f"{gw.url}/webhooks/tg",
                                 callback_update(thumbs_up, chat_id=CHAT, user_id=CHAT, message_id=answer.message_id))
        assert resp.status == 200
        await gw.idle()
        [patch] = [r for r in gw.emulator.requests if r.method == "PATCH"]
        assert patch.json == {"feedback": "positive"} and patch.path.endswith("/feedback")
        assert len(tg.calls_to("answerCallbackQuery")) == 1
        assert [b["text"] for b in last(tg).reply_markup["inline_keyboard"][0]] == ["👍 ✓", "👎"]


async def test_new_starts_a_fresh_conversation() -> None:
    async with gateway() as (gw, tg):
        await say(gw, "one")
        await gw.idle()
        await say(gw, "two")
        await gw.idle()
        assert "message 2 of" in last(tg).text
        await say(gw, f"/new@{USERNAME}")
        await gw.idle()
        assert "new conversation" in last(tg).text.lower()
        await say(gw, "three")
        await gw.idle()
        assert "message 1 of" in last(tg).text


async def test_flood_control_retry_after_is_honoured() -> None:
    async with gateway() as (gw, tg):
        tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
        await say(gw, "busy day")
        await gw.idle(timeout=20)
        [answer] = tg.chat(CHAT)
        assert answer.text.startswith('You said: "busy day"')
        assert [c.status for c in tg.calls if c.method == "sendMessage"] == [429, 200]


async def test_polling_mode_answers_and_persists_the_offset() -> None:
    async with gateway(mode="polling", poll_timeout=1) as (gw, tg):
        tg.webhook = {"url": "https://old.example.com"}
        update = text_update("polled hello", chat_id=CHAT, user_id=CHAT)
        tg.push_update(update)
        tg.push_update(update)  # redelivered before the offset moved: still answered once
        for _ in range(200):
            if tg.chat(CHAT):
                break
            await asyncio.sleep(0.05)
        await gw.idle()
        assert chats(gw) == ["polled hello"] and len(tg.chat(CHAT)) == 1
        assert tg.webhook == {}  # getUpdates needs the webhook removed
        stored = await gw.services.store.get_value(f"telegram.{BOT_ID}.offset")
        assert stored == str(update["update_id"] + 1)
        channel = gw.channel("tg")
        assert isinstance(channel, TelegramChannel) and channel.polls


@pytest.mark.parametrize("chat_type", ["private"])
async def test_start_greets_through_the_agent(chat_type: str) -> None:
    async with gateway() as (gw, tg):
        await say(gw, "/start", chat_type=chat_type)
        await gw.idle()
        assert chats(gw) == ["Hello"]
        assert last(tg).text.startswith('You said: "Hello"')
