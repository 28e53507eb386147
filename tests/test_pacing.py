"""Pacing by the platform's scopes (issue 17): what a 429 pauses, what it only slows, and what an
operator sees while an answer waits (admin ``/admin/waiting``, ``/metrics``), up to the delivery
deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.pacing import FLOOR, Pacer, Scope
from gateway.policy import APOLOGY
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes import slack as fslack
from tests.fakes import slack_inbound
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, message_params

ADMIN = "adm1n-t0ken-for-pacing"
BOT = "+15557654321"
CHAT = Scope("chat", "1", rate=1.0, burst=3.0, conversation=True)
OTHER_CHAT = Scope("chat", "2", rate=1.0, burst=3.0, conversation=True)
BOT_SCOPE = Scope("bot", "bot", rate=30.0, burst=30.0)


async def test_an_unscoped_429_pauses_the_conversation_and_only_slows_the_shared_scope() -> None:
    pacer = Pacer("tg")
    await pacer.pace([CHAT, BOT_SCOPE], "a")
    pacer.refused([CHAT, BOT_SCOPE], 30.0)
    assert pacer.paused_for(CHAT) > 29
    assert pacer.paused_for(BOT_SCOPE) == 0 and pacer.paused_for(OTHER_CHAT) == 0
    # Another chat goes at once; the bot-wide rate is cut, never below half, however often refused.
    started = time.monotonic()
    await pacer.pace([OTHER_CHAT, BOT_SCOPE], "b")
    assert time.monotonic() - started < 0.5
    bucket = pacer._buckets[BOT_SCOPE.name]
    cut = bucket.rate(time.monotonic())
    assert FLOOR * BOT_SCOPE.rate <= cut < BOT_SCOPE.rate
    for n in range(20):  # other chats refused too, a second apart: cut again, never below half
        bucket.cut_at -= 1.0
        pacer.refused([Scope("chat", f"x{n}", conversation=True), BOT_SCOPE], 30.0)
    assert bucket.rate(time.monotonic()) >= FLOOR * BOT_SCOPE.rate
    # The refused chat waits, listed with its reason.
    waiter = asyncio.create_task(pacer.pace([CHAT, BOT_SCOPE], "a"))
    await asyncio.sleep(0.05)
    [waiting] = pacer.waiting()
    assert waiting.scope == "chat:1" and "Retry-After 30s" in waiting.reason and not waiter.done()
    waiter.cancel()


async def test_a_conversation_refused_again_after_its_pause_cuts_nothing_more() -> None:
    pacer = Pacer("sms")
    account = Scope("account", "AC1")
    pacer.refused([CHAT, account], 0.01)
    bucket = pacer._buckets[account.name]
    first = bucket.cap
    bucket.cut_at -= 1.0  # a second later
    pacer.refused([CHAT, account], 0.01)  # the same person, still refused
    assert bucket.cap == first


async def test_a_429_naming_its_scope_pauses_that_scope() -> None:
    pacer = Pacer("slack")
    method = Scope("method", "chat.update")
    pacer.refused([CHAT, method], 10.0, named="method")
    assert pacer.paused_for(method) > 9 and pacer.paused_for(CHAT) == 0


async def test_a_declared_rate_paces_after_its_burst() -> None:
    pacer = Pacer("tg")
    fast = Scope("chat", "9", rate=20.0, burst=2.0, conversation=True)
    started = time.monotonic()
    for _ in range(6):  # 2 at once, then 4 at 20/s
        await pacer.pace([fast], "x")
    assert time.monotonic() - started >= 0.15


@pytest.fixture
async def slack() -> AsyncIterator[fslack.FakeSlack]:
    async with fslack.FakeSlack() as fake:
        yield fake


async def _slack_say(gw: GatewayUnderTest, http: aiohttp.ClientSession, channel: str, text: str, n: int) -> None:
    event = slack_inbound.message(text, channel=channel, user="U" + channel, ts=f"1690000000.{n:06d}")
    body = slack_inbound.event_body(event, event_id=f"Ev{n}")
    async with http.post(f"{gw.url}/webhooks/slack", data=body, headers=slack_inbound.signed_headers(body)) as r:
        assert r.status == 200


def _answered(texts: list[str], word: str) -> int:
    return sum(word in t and t.endswith("of this conversation.") for t in texts)


async def test_slack_one_refused_channel_does_not_hold_back_the_others(slack: fslack.FakeSlack) -> None:
    config = {"type": "slack", "bot_token": slack.token, "signing_secret": fslack.SECRET,
              "api_base": slack.api_base, "update_interval": 0.05}
    async with running_gateway({"slack": config}) as gw, aiohttp.ClientSession() as http:
        slack.refusals.refuse("D0001", 4.0, retry_after=1.0)
        await _slack_say(gw, http, "D0001", "refused one", 1)
        await slack.wait_for(lambda: slack.refusals.count.get("D0001", 0) >= 2, 5)
        # While D0001 is still refused (chat.postMessage and chat.update 429 there), D0002 flows.
        await _slack_say(gw, http, "D0002", "free one", 2)
        await slack.wait_for(lambda: _answered([m.text for m in slack.thread("D0002")], "free one") == 1, 3)
        assert _answered([m.text for m in slack.thread("D0001")], "refused one") == 0
        await gw.idle(15)
        shown = [m.text for m in slack.thread("D0001")]
        assert _answered(shown, "refused one") == 1 and not any(APOLOGY in t for t in shown), shown


def _metric(gw: GatewayUnderTest, name: str, **labels: str) -> float:
    return gw.services.metrics.registry.get_sample_value(name, labels) or 0.0


async def _sms(gw: GatewayUnderTest, http: aiohttp.ClientSession, twilio: FakeTwilio, sender: str, text: str,
               sid: str) -> None:
    status, body, _ = await twilio.post(http, f"{gw.url}/webhooks/sms", message_params(text, sender, BOT, sid))
    assert status == 200, body


async def _waiting(gw: GatewayUnderTest, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
    async with http.get(f"{gw.url}/admin/waiting", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        assert r.status == 200
        return list((await r.json())["data"])


async def _until(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_refused_sms_waits_listed_and_counted_then_arrives_once() -> None:
    async with FakeTwilio() as twilio:
        sms = {"type": "twilio-sms", "from": BOT, "api_base": twilio.url, "account_sid": ACCOUNT_SID,
               "auth_token": AUTH_TOKEN}
        async with running_gateway({"sms": sms}, gateway={"admin_token": ADMIN}) as gw, \
                aiohttp.ClientSession() as http:
            user = "+15550001111"
            twilio.refusals.refuse(user, 3.0, retry_after=1.0)
            await _sms(gw, http, twilio, user, "hello there", "SM1")

            async def listed() -> bool:
                return any(w["channel"] == "sms" for w in await _waiting(gw, http))

            await _until(listed, 5)
            [wait] = [w for w in await _waiting(gw, http) if w["channel"] == "sms"]
            assert "Retry-After 1s" in wait["reason"] or "trying again" in wait["reason"], wait
            assert sum(_metric(gw, "switchboard_channel_rate_limit_waiting", channel="sms", scope=k)
                       for k in ("recipient", "conversation")) >= 1
            await gw.idle(15)
            bodies = [m["Body"] for m in twilio.messages if m["To"] == user]
            assert len(bodies) == 1 and "hello there" in bodies[0], bodies
            assert await _waiting(gw, http) == []
            waited = sum(_metric(gw, "switchboard_channel_rate_limit_wait_seconds_total", channel="sms", scope=k)
                         for k in ("recipient", "conversation"))
            assert waited >= 1.0
            assert _metric(gw, "switchboard_channel_rate_limited_total", channel="sms", scope="recipient") >= 1


async def test_past_the_delivery_deadline_the_operator_is_alerted(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeTwilio() as twilio:
        sms = {"type": "twilio-sms", "from": BOT, "api_base": twilio.url, "account_sid": ACCOUNT_SID,
               "auth_token": AUTH_TOKEN}
        async with running_gateway({"sms": sms}, gateway={"delivery_deadline": 1.5}) as gw, \
                aiohttp.ClientSession() as http:
            user = "+15550002222"
            twilio.refusals.refuse(user, 60.0, retry_after=0.5)
            with caplog.at_level(logging.ERROR):
                await _sms(gw, http, twilio, user, "anyone there", "SM2")
                await gw.idle(15)
            assert _metric(gw, "switchboard_delivery_deadline_exceeded_total", channel="sms") == 1
            assert _metric(gw, "switchboard_turns_total", channel="sms", outcome="failed") == 1
            assert any("ALERT" in r.getMessage() and "delivery_deadline" in r.getMessage() for r in caplog.records)
            assert not [m for m in twilio.messages if m["To"] == user]


async def test_a_shared_scope_is_paced_across_instances_through_redis() -> None:
    from adapters.stores.redis import RedisStore
    from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis

    flush_test_redis()
    store = RedisStore(REDIS_TEST_URL)
    await store.initialize()
    try:
        bot = Scope("bot", "bot", rate=4.0, burst=4.0, shared=True)
        one, two = Pacer("tg", store=lambda: store), Pacer("tg", store=lambda: store)
        started = time.monotonic()
        for n in range(8):  # 4 at once, the rest at 4/s, whichever instance calls
            await (one if n % 2 else two).pace([Scope("chat", str(n), conversation=True), bot], str(n))
        # Each instance alone would have let its 4 calls go at once.
        assert time.monotonic() - started >= 0.75
    finally:
        await store.close()


async def test_buckets_of_conversations_long_gone_are_forgotten() -> None:
    pacer = Pacer("tg")
    for n in range(1500):
        await pacer.pace([Scope("chat", str(n), conversation=True)], str(n))
    pacer.refused([Scope("chat", "0", conversation=True)], 600.0)
    for bucket in pacer._buckets.values():
        bucket.used -= 3600  # an hour later
    await pacer.pace([Scope("chat", "new", conversation=True)], "new")
    for n in range(1500, 2600):
        await pacer.pace([Scope("chat", str(n), conversation=True)], str(n))
    assert len(pacer._buckets) < 2000
    assert pacer.paused_for(Scope("chat", "0", conversation=True)) > 500  # a pause is never forgotten
