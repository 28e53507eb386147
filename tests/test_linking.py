"""Cross-channel identity linking: one-time codes, expiry, attempt limits, and the agent seeing one
``userId`` on both channels afterwards."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.stores.memory import MemoryStore
from gateway.commands import LINK_TEXTS
from gateway.config import LinkingSettings
from gateway.events import Identity
from gateway.identity import user_id_for
from gateway.linking import Linker, LinkResult
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis
from tests.fakes.telegram import SECRET, FakeTelegram, post_update, text_update
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, message_params

PHONE, BOT, CHAT = "+15551230001", "+15557654321", 4242
CODE = re.compile(r"\b([A-Z2-9]{4}-[A-Z2-9]{4})\b")
TOKEN = "echo-secret"


class TwoChannels:
    """A gateway with Telegram and SMS, and a person on each."""

    def __init__(self, gw: GatewayUnderTest, tg: FakeTelegram, twilio: FakeTwilio) -> None:
        self.gw, self.tg, self.twilio = gw, tg, twilio
        self._sid = 0

    async def telegram(self, text: str) -> str:
        update = text_update(text, chat_id=CHAT, user_id=CHAT)
        assert (await post_update(f"{self.gw.url}/webhooks/tg", update)).status == 200
        await self.gw.idle()
        return self.tg.chat(CHAT)[-1].text

    async def sms(self, text: str) -> str:
        self._sid += 1
        async with aiohttp.ClientSession() as http:
            status, _, _ = await self.twilio.post(http, f"{self.gw.url}/webhooks/sms",
                                                  message_params(text, PHONE, BOT, f"SM{self._sid}"))
        assert status == 200
        await self.gw.idle()
        return self.twilio.bodies(PHONE)[-1]


@pytest.fixture
async def two() -> AsyncIterator[TwoChannels]:
    async with FakeTelegram() as tg, FakeTwilio() as twilio:
        channels = {
            "tg": {"type": "telegram", "bot_token": tg.token, "secret_token": SECRET,
                   "api_base": tg.api_base, "edit_interval": 0.05},
            "sms": {"type": "twilio-sms", "from": BOT, "api_base": twilio.url, "account_sid": ACCOUNT_SID,
                    "auth_token": AUTH_TOKEN},
        }
        async with running_gateway(channels) as gw:
            yield TwoChannels(gw, tg, twilio)


def conversations_by_user(gw: GatewayUnderTest) -> dict[str, list[str]]:
    """What the agent itself recorded: each conversation's userId, from the chat requests it got."""
    users: dict[str, list[str]] = {}
    for conv in gw.emulator.state.conversations.values():
        users.setdefault(conv.user_id, []).append(conv.id)
    return users


async def test_linking_across_telegram_and_sms_gives_the_agent_one_user(two: TwoChannels) -> None:
    assert "message 1" in await two.telegram("hello from telegram")
    assert "message 1" in await two.sms("hello from sms")
    telegram_user = next(r.json["userId"] for r in two.gw.emulator.requests if r.json and "userId" in r.json)
    issued = await two.telegram("/link")
    code = CODE.search(issued)
    assert code and "10 minutes" in issued
    assert await two.sms(code.group(1).lower()) == LINK_TEXTS[LinkResult.LINKED]  # typed in lower case
    assert "message 1 of this conversation" in await two.sms("now on sms again")
    assert "message 2 of this conversation" in await two.telegram("and telegram")

    new_chats = [r.json for r in two.gw.emulator.requests
                 if r.path.endswith("/chat") and r.json and "conversationId" not in r.json]
    assert [c["message"] for c in new_chats] == ["hello from telegram", "hello from sms", "now on sms again"]
    assert new_chats[2]["userId"] == telegram_user  # the SMS side now speaks as the Telegram user
    by_user = conversations_by_user(two.gw)
    assert len(by_user[telegram_user]) == 2  # one conversation per channel, one userId for both
    assert await two.sms(code.group(1)) == LINK_TEXTS[LinkResult.INVALID].format(link="/link")  # used up


async def test_wrong_codes_are_limited_and_never_link(two: TwoChannels) -> None:
    code = CODE.search(await two.telegram("/link"))
    assert code
    for attempt in range(4):
        assert await two.sms("/link ZZZZ-ZZZZ") == LINK_TEXTS[LinkResult.INVALID].format(link="/link"), attempt
    assert await two.sms("ZZZZ-ZZZ2") == LINK_TEXTS[LinkResult.LOCKED]  # the fifth wrong code
    assert await two.sms(code.group(1)) == LINK_TEXTS[LinkResult.LOCKED]  # even the right one, for now
    await two.sms("who am I?")
    last = [r.json for r in two.gw.emulator.requests if r.path.endswith("/chat")][-1]
    assert last["userId"] == user_id_for(Identity("twilio-sms", "", PHONE))


async def test_a_code_sent_back_on_its_own_chat_does_not_count(two: TwoChannels) -> None:
    code = CODE.search(await two.telegram("/link"))
    assert code
    assert await two.telegram(code.group(1)) == LINK_TEXTS[LinkResult.OWN_CODE]
    assert await two.sms(code.group(1)) == LINK_TEXTS[LinkResult.LINKED]  # still valid afterwards
    assert await two.sms(code.group(1)) == LINK_TEXTS[LinkResult.INVALID].format(link="/link")


# -- the Linker on its own, with a clock we control ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def linker() -> tuple[Linker, Clock, MemoryStore]:
    clock = Clock()
    store = MemoryStore(clock=clock)
    return Linker(LinkingSettings(code_ttl=600, max_attempts=3), store), clock, store


A, B, C = "telegram|bot|1", "twilio-sms||+1555", "email||ann@example.org"


async def test_codes_expire(linker: tuple[Linker, Clock, MemoryStore]) -> None:
    link, clock, _ = linker
    code = await link.issue(A)
    clock.now += 599
    assert (await link.redeem(B, code))[0] is LinkResult.LINKED  # just in time
    code = await link.issue(A)
    clock.now += 601
    assert (await link.redeem(C, code))[0] is LinkResult.INVALID  # too late
    assert await link.store.get_link(C) is None


async def test_a_new_code_replaces_the_previous_one(linker: tuple[Linker, Clock, MemoryStore]) -> None:
    link, _, _ = linker
    first = await link.issue(A)
    second = await link.issue(A)
    assert (await link.redeem(B, first))[0] is LinkResult.INVALID
    result, moved = await link.redeem(B, second)
    assert result is LinkResult.LINKED and moved is not None
    assert moved.user_id == "telegram.bot.1" and moved.previous == {B: user_id_for(Identity("twilio-sms", "", "+1555"))}


async def test_attempts_are_counted_per_identity_and_window(linker: tuple[Linker, Clock, MemoryStore]) -> None:
    link, clock, _ = linker
    code = await link.issue(A)
    results = [(await link.redeem(B, "AAAA-AAAA"))[0] for _ in range(3)]
    assert results == [LinkResult.INVALID, LinkResult.INVALID, LinkResult.LOCKED]
    assert (await link.redeem(B, code))[0] is LinkResult.LOCKED
    assert (await link.redeem(C, code))[0] is LinkResult.LINKED  # another identity is not locked out
    clock.now += 601
    code = await link.issue(A)
    assert (await link.redeem(B, code))[0] is LinkResult.LINKED  # the window passed


async def test_codes_are_stored_only_as_hashes(linker: tuple[Linker, Clock, MemoryStore]) -> None:
    link, _, store = linker
    code = await link.issue(A)
    stored = json.dumps({k: v[0] for k, v in store._values.items()})
    assert code not in stored and code.replace("-", "") not in stored


async def test_linking_moves_the_identities_already_linked_to_it(linker: tuple[Linker, Clock, MemoryStore]) -> None:
    link, _, store = linker
    b_own = user_id_for(Identity("twilio-sms", "", "+1555"))
    await link.link(C, b_own)  # C was linked to B earlier: they are one person
    result, moved = await link.redeem(B, await link.issue(A))
    assert result is LinkResult.LINKED and moved is not None
    assert await store.get_link(B) == await store.get_link(C) == "telegram.bot.1"
    assert set(moved.previous) == {B, C}
    assert (await link.redeem(C, await link.issue(A)))[0] is LinkResult.ALREADY


async def test_unlinking_gives_the_own_user_id_back(linker: tuple[Linker, Clock, MemoryStore]) -> None:
    link, _, store = linker
    await link.redeem(B, await link.issue(A))
    moved = await link.unlink(B)
    assert moved is not None and moved.previous == {B: "telegram.bot.1"}
    assert await store.get_link(B) is None and await link.unlink(B) is None


@pytest.mark.redis
async def test_no_code_in_clear_in_redis(echo_plugin: Any) -> None:
    flush_test_redis()
    async with running_gateway({"echo": {"type": "echo", "token": TOKEN}}, store=REDIS_TEST_URL) as gw:
        async with aiohttp.ClientSession() as s:
            await s.post(f"{gw.url}/webhooks/echo", json={"id": "1", "user": "ann", "text": "/link"},
                         headers={"X-Echo-Token": TOKEN})
        await gw.idle()
    code = CODE.search(echo_plugin.SENT[-1]["text"])
    assert code
    async with aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True) as r:
        keys = await r.keys("switchboard:v1:val:link:*")
        assert len(keys) == 2  # the hashed code and the identity's pointer to it
        dumped = json.dumps({k: await r.get(k) for k in keys})
    assert code.group(1) not in dumped and code.group(1).replace("-", "") not in dumped
