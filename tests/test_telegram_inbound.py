"""Telegram inbound: the secret header, which updates get an answer, commands, buttons, settings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from channels.telegram import TelegramChannel
from channels.telegram.api import feedback_data, parse_feedback_data
from gateway.channel import InboundRequest
from gateway.errors import ConfigError, WebhookRejected
from gateway.events import Identity, InboundEvent
from switchboard.testing import StubServices
from tests.fakes.telegram import (
    BOT_ID,
    SECRET,
    USERNAME,
    FakeTelegram,
    callback_update,
    text_update,
)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def channel(tg: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    async with aiohttp.ClientSession() as http:
        raw = {"type": "telegram", "bot_token": tg.token, "secret_token": SECRET, "api_base": tg.api_base}
        chan = TelegramChannel.from_config("tg", raw, StubServices(http))  # type: ignore[arg-type]
        assert isinstance(chan, TelegramChannel)
        async with chan:
            yield chan


def request(update: dict[str, Any] | bytes, secret: str | None = SECRET) -> InboundRequest:
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return InboundRequest("POST", "/webhooks/tg", {}, CIMultiDictProxy(CIMultiDict(headers)), body,
                          "http://gw/webhooks/tg")


async def events(chan: TelegramChannel, update: dict[str, Any]) -> list[InboundEvent]:
    req = request(update)
    await chan.verify(req)
    return (await chan.parse(req)).events


# -- the secret token ------------------------------------------------------------------------------
async def test_the_right_secret_passes(channel: TelegramChannel) -> None:
    await channel.verify(request(text_update("hi")))


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET.upper()])
async def test_a_missing_or_wrong_secret_is_403(channel: TelegramChannel, secret: str | None) -> None:
    with pytest.raises(WebhookRejected) as info:
        await channel.verify(request(text_update("hi"), secret=secret))
    assert info.value.status == 403


_ODD_TEXT = text_update("x")
_ODD_TEXT["message"]["text"] = 5


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"message": {}}', b'{"update_id": "x"}', b'{"update_id": 1, "message": "hi"}',
     b'{"update_id": 1, "message": {"text": "no chat"}}', json.dumps(_ODD_TEXT).encode()],
    # Ids from the bodies, except the last: it carries today's date, and pytest-xdist needs every
    # worker to collect the same ids.
    ids=["not-json", "list", "no-update-id", "string-update-id", "message-not-object", "no-chat", "text-not-string"],
)
async def test_malformed_updates_are_400(channel: TelegramChannel, body: bytes) -> None:
    with pytest.raises(WebhookRejected) as info:
        await channel.parse(request(body))
    assert info.value.status == 400


async def test_the_username_is_learned_through_get_me(channel: TelegramChannel, tg: FakeTelegram) -> None:
    assert channel.me.username == USERNAME and channel.me.id == BOT_ID
    assert f"@{USERNAME}" in channel.describe()
    assert tg.token not in channel.describe() and tg.token not in repr(channel.settings)


# -- which updates are answered --------------------------------------------------------------------
async def test_a_private_message_is_one_event_per_update(channel: TelegramChannel) -> None:
    [event] = await events(channel, text_update("where is my order?", chat_id=42, user_id=42, update_id=77))
    assert event.key == f"{BOT_ID}:77"
    assert event.identity == Identity("telegram", str(BOT_ID), "42")
    assert event.scope == "42" and event.text == "where is my order?"
    assert event.reply == {"chat_id": 42}


async def test_a_group_message_without_mention_is_ignored(channel: TelegramChannel) -> None:
    update = text_update("lunch at noon?", chat_id=-100123, user_id=5, chat_type="supergroup")
    assert await events(channel, update) == []


async def test_a_group_mention_is_answered_without_the_mention(channel: TelegramChannel) -> None:
    update = text_update(f"@{USERNAME} what are your opening hours?", chat_id=-100123, user_id=5,
                         chat_type="supergroup", message_id=31)
    [event] = await events(channel, update)
    assert event.text == "what are your opening hours?"
    assert event.scope == "-100123" and event.identity.id == "5"
    assert event.reply == {"chat_id": -100123, "reply_to": 31}


async def test_a_mention_of_another_bot_is_not_ours(channel: TelegramChannel) -> None:
    update = text_update("@someone_else_bot help", chat_id=-5, chat_type="group")
    assert await events(channel, update) == []


async def test_a_reply_to_the_bot_in_a_group_is_answered(channel: TelegramChannel) -> None:
    update = text_update("and on sundays?", chat_id=-100123, chat_type="supergroup", reply_to_bot=True)
    [event] = await events(channel, update)
    assert event.text == "and on sundays?"


@pytest.mark.parametrize(
    ("text", "chat_type", "expected"),
    [
        ("/start", "private", "Hello"),
        ("/start deep-link-payload", "private", "Hello"),
        ("/new", "private", "/new"),
        ("/retry", "private", "/retry"),
        (f"/new@{USERNAME}", "supergroup", "/new"),
        ("/retry", "supergroup", "/retry"),
        ("/new@other_bot", "supergroup", None),
        ("/new@other_bot", "private", None),
        ("/help", "supergroup", "/help"),  # a configured command word: no mention needed
        ("/weather", "supergroup", None),  # not ours: a group must name the bot
        (f"/weather@{USERNAME}", "supergroup", "/weather"),
    ],
)
async def test_commands(channel: TelegramChannel, text: str, chat_type: str, expected: str | None) -> None:
    chat_id = 42 if chat_type == "private" else -100
    found = await events(channel, text_update(text, chat_id=chat_id, chat_type=chat_type))
    assert [e.text for e in found] == ([expected] if expected else [])


async def test_edits_service_messages_and_bots_are_ignored(channel: TelegramChannel) -> None:
    edited = text_update("typo fixed")
    edited["edited_message"] = edited.pop("message")
    pinned = text_update("x")
    del pinned["message"]["text"]
    pinned["message"]["pinned_message"] = text_update("an old message")["message"]
    from_bot = text_update("beep")
    from_bot["message"]["from"]["is_bot"] = True
    for update in (edited, pinned, from_bot):
        assert await events(channel, update) == []


# -- buttons ---------------------------------------------------------------------------------------
async def test_a_feedback_button_is_a_feedback_event_and_is_answered(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    data = feedback_data("-", "msg_abc123")
    assert data is not None
    [event] = await events(channel, callback_update(data, chat_id=42, message_id=501, update_id=90))
    assert event.kind == "feedback" and event.key == f"{BOT_ID}:90"
    assert event.meta == {"message_id": "msg_abc123", "feedback": "negative"}
    assert event.reply == {"chat_id": 42, "message_id": 501}
    await channel.shutdown()  # waits for the background answerCallbackQuery
    assert len(tg.calls_to("answerCallbackQuery")) == 1


async def test_an_unknown_button_is_answered_but_not_an_event(channel: TelegramChannel, tg: FakeTelegram) -> None:
    assert await events(channel, callback_update("something-old")) == []
    await channel.shutdown()
    assert len(tg.calls_to("answerCallbackQuery")) == 1


def test_callback_data_fits_64_bytes_or_is_left_out() -> None:
    data = feedback_data("+", "m" * 59)
    assert data is not None and len(data.encode()) == 64
    assert parse_feedback_data(data) == ("positive", "m" * 59)
    assert feedback_data("+", "m" * 60) is None
    assert parse_feedback_data("fb:?:x") is None and parse_feedback_data(None) is None


# -- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message_part"),
    [
        ({"bot_token": "123:abc"}, "secret_token is required"),
        ({"bot_token": "not-a-token", "secret_token": "s"}, "bot_token"),
        ({"bot_token": "123:abc", "secret_token": "has space"}, "secret_token"),
        ({"bot_token": "123:abc", "secret_token": "s", "colour": "red"}, "colour: unknown key"),
        ({"bot_token": "123:abc", "secret_token": "s", "api_base": "api.telegram.org"}, "api_base"),
        ({"bot_token": "123:abc", "mode": "carrier-pigeon"}, "mode"),
    ],
)
def test_settings_mistakes_name_the_key(raw: dict[str, Any], message_part: str) -> None:
    with pytest.raises(ConfigError, match=message_part):
        TelegramChannel.validate("tg", {"type": "telegram", **raw})


def test_polling_needs_no_secret_and_no_webhook_url() -> None:
    settings = TelegramChannel.validate("tg", {"type": "telegram", "bot_token": "123:abc", "mode": "polling"})
    chan = TelegramChannel("tg", settings, None)  # type: ignore[arg-type]
    assert chan.polls and chan.webhook_urls("https://bot.example.com") == []


def test_webhook_mode_prints_its_url() -> None:
    settings = TelegramChannel.validate("tg", {"type": "telegram", "bot_token": "123:abc", "secret_token": "s"})
    chan = TelegramChannel("tg", settings, None)  # type: ignore[arg-type]
    assert not chan.polls
    assert chan.webhook_urls("https://bot.example.com/") == [
        ("setWebhook url", "https://bot.example.com/webhooks/tg")
    ]


async def test_set_webhook_registers_url_secret_and_updates(channel: TelegramChannel, tg: FakeTelegram) -> None:
    url = await channel.set_webhook("https://bot.example.com")
    assert url == "https://bot.example.com/webhooks/tg"
    assert tg.webhook["url"] == url and tg.webhook["secret_token"] == SECRET
    assert tg.webhook["allowed_updates"] == ["message", "callback_query"]


async def test_a_revoked_token_stops_start_up_with_the_key_named(tg: FakeTelegram) -> None:
    raw = {"type": "telegram", "bot_token": "999:revoked", "secret_token": SECRET, "api_base": tg.api_base}
    chan = TelegramChannel("tg", TelegramChannel.validate("tg", raw), None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"channels\.tg\.bot_token"):
        await chan.initialize()
    await chan.shutdown()
