"""In-channel commands: the same words on a slash-command channel (Telegram) and as the whole
message on channels without commands (Twilio SMS, and the echo plugin channel)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from adapters.stores.memory import MemoryStore
from gateway.commands import NEW_CONVERSATION_TEXT, Command, Controls, Parsed
from gateway.config import parse_settings
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes.telegram import USERNAME, FakeTelegram, post_update, text_update
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, message_params

TOKEN = "echo-secret"
USER, BOT = "+15551230001", "+15557654321"
CHAT = 4242


def chats(gw: GatewayUnderTest) -> list[dict[str, Any]]:
    return [r.json for r in gw.emulator.requests if r.method == "POST" and r.path.endswith("/chat")]


def retries(gw: GatewayUnderTest) -> int:
    return sum(1 for r in gw.emulator.requests if r.path.endswith("/retry"))


async def echo(gw: GatewayUnderTest, text: str, key: str, user: str = "ann") -> None:
    async with aiohttp.ClientSession() as s, s.post(
        f"{gw.url}/webhooks/echo", data=json.dumps({"id": key, "user": user, "text": text}),
        headers={"X-Echo-Token": TOKEN},
    ) as resp:
        assert resp.status == 200
    await gw.idle()


# -- SMS: no slash commands, so the words work as the whole message ---------------------------------


@pytest.fixture
async def sms() -> AsyncIterator[tuple[GatewayUnderTest, FakeTwilio]]:
    async with FakeTwilio() as twilio:
        config = {"type": "twilio-sms", "from": BOT, "api_base": twilio.url, "account_sid": ACCOUNT_SID,
                  "auth_token": AUTH_TOKEN}
        async with running_gateway({"sms": config}) as gw:
            yield gw, twilio


async def text_sms(gw: GatewayUnderTest, twilio: FakeTwilio, text: str, sid: str) -> None:
    async with aiohttp.ClientSession() as http:
        status, _, _ = await twilio.post(http, f"{gw.url}/webhooks/sms", message_params(text, USER, BOT, sid))
    assert status == 200
    await gw.idle()


async def test_sms_commands_work_as_the_whole_message(sms: tuple[GatewayUnderTest, FakeTwilio]) -> None:
    gw, twilio = sms
    await text_sms(gw, twilio, "hello", "SM1")
    await text_sms(gw, twilio, "  /RETRY ", "SM2")
    await text_sms(gw, twilio, "/help", "SM3")
    await text_sms(gw, twilio, "/new", "SM4")
    await text_sms(gw, twilio, "again", "SM5")
    await text_sms(gw, twilio, "please /new", "SM6")  # not the whole message: a question for the agent
    first, regenerated, help_text, new, fresh, question = twilio.bodies(USER)
    assert regenerated == first == 'You said: "hello". This is message 1 of this conversation.'
    assert retries(gw) == 1
    assert "/new: start a new conversation" in help_text and "/retry:" in help_text and "/link:" in help_text
    assert "/human" not in help_text  # no handoff configured: not offered
    assert new == NEW_CONVERSATION_TEXT
    assert fresh == 'You said: "again". This is message 1 of this conversation.'
    assert question.startswith('You said: "please /new"')
    assert [c.get("message") for c in chats(gw)] == ["hello", "again", "please /new"]


# -- Telegram: native bot commands ---------------------------------------------------------------------


async def test_telegram_commands_in_private_and_group_chats() -> None:
    group = -100777
    async with FakeTelegram() as tg:
        config = {"type": "telegram", "bot_token": tg.token, "secret_token": "s3cr3t-token", "api_base": tg.api_base,
                  "edit_interval": 0.05}
        async with running_gateway({"tg": config}) as gw:

            async def say(text: str, chat: int = CHAT, **kw: Any) -> None:
                update = text_update(text, chat_id=chat, user_id=kw.pop("user_id", CHAT), **kw)
                assert (await post_update(f"{gw.url}/webhooks/tg", update, secret="s3cr3t-token")).status == 200
                await gw.idle()

            await say("hello")
            await say("/retry")
            await say("/help")
            await say("/new")
            await say("and now?")
            await say(f"/new@{USERNAME}", chat=group, user_id=7, chat_type="supergroup")
    private = [m.text for m in tg.chat(CHAT)]
    assert private[0] == private[1] == 'You said: "hello". This is message 1 of this conversation.'
    assert "/link: connect this chat" in private[2]
    assert private[3] == NEW_CONVERSATION_TEXT
    assert private[4] == 'You said: "and now?". This is message 1 of this conversation.'
    assert [m.text for m in tg.chat(group)] == [NEW_CONVERSATION_TEXT]
    assert retries(gw) == 1


# -- configurable words ----------------------------------------------------------------------------------


async def test_command_words_come_from_the_config(echo_plugin: Any) -> None:
    sections = {"commands": {"new": ["Start over"], "help": ["?", "menu"]}}
    async with running_gateway({"echo": {"type": "echo", "token": TOKEN}}, sections) as gw:
        await echo(gw, "one", "1")
        await echo(gw, "start   OVER", "2")
        await echo(gw, "/new", "3")  # no longer a command word: the agent gets it
        await echo(gw, "MENU", "4")
    texts = [s["text"] for s in echo_plugin.SENT]
    assert texts[1] == NEW_CONVERSATION_TEXT
    assert texts[2] == 'You said: "/new". This is message 1 of this conversation.'
    assert "start over: start a new conversation" in texts[3]


async def test_an_idle_conversation_is_renewed_after_the_conversation_ttl(echo_plugin: Any) -> None:
    async with running_gateway({"echo": {"type": "echo", "token": TOKEN}},
                               gateway={"conversation_ttl": 0.3}) as gw:
        await echo(gw, "one", "1")
        await echo(gw, "two", "2")
        await asyncio.sleep(0.4)
        await echo(gw, "three", "3")
    assert [s["text"].split(". ")[1] for s in echo_plugin.SENT] == [
        "This is message 1 of this conversation.",
        "This is message 2 of this conversation.",
        "This is message 1 of this conversation.",
    ]
    first, second, third = chats(gw)
    assert second["conversationId"] == first_conversation(gw) and "conversationId" not in third
    assert "conversationId" not in first


def first_conversation(gw: GatewayUnderTest) -> str:
    return str(next(r.json["conversationId"] for r in gw.emulator.requests if r.json and r.json.get("conversationId")))


# -- parsing -------------------------------------------------------------------------------------------------


def controls(**raw: Any) -> Controls:
    return Controls(parse_settings(raw, env={}), MemoryStore())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/new", Parsed(Command.NEW)),
        ("/Reset", Parsed(Command.NEW)),
        ("\n /retry \n", Parsed(Command.RETRY)),
        ("/help\n-- \nAnn Smith\nAcme Ltd", Parsed(Command.HELP)),  # an email signature does not count
        ("/link", Parsed(Command.LINK)),
        ("/link abcd-ef23", Parsed(Command.LINK, "abcd-ef23")),
        ("ABCD-EF23", Parsed(Command.LINK, "ABCD-EF23")),
        ("abstract", None),  # eight letters of the code alphabet, but no dash: a word, not a code
        ("my order is ABCD-EF23", None),
        ("/human", None),  # handoff not configured
        ("/newer", None),
        ("new", None),
        ("", None),
    ],
)
def test_parse(text: str, expected: Parsed | None) -> None:
    assert controls().parse(text) == expected


def test_linking_can_be_switched_off() -> None:
    off = controls(linking={"enabled": False})
    assert off.parse("/link") is None and off.parse("ABCD-EF23") is None
    assert "/link" not in off.help_text()
