"""How many times one answer goes to Redis, counted with ``MONITOR``, so the count cannot creep back.

Measured (Slack DM and SMS, a new conversation, the agent answering without tools), 6 each, as
issue 18 asked:

1. journal the event and count it for the per-person rate limit (webhook, one script);
2. take the lease, read the head and count the attempt (one script);
3. record who spoke where, read the conversation and the identity link, and note that read on the
   entry: the record that the agent is about to be asked (one script);
4. save the agent's answer in the progress before delivering it (a resumed turn never asks twice),
   with the conversation and the message map (one script);
5. the intent before the visible post (the exactly-once guarantee);
6. finish the entry, read the next head and, none being left, release the lease (one script); the
   post's result is not saved apart, the finish drops the progress anyway.

The shared agent rate budget (taking and settling a token) and the platform's pacing buckets are
counted apart: they are rate limits shared with other instances, not the turn's own state.

SQLite makes the same six: each a statement or a unit of statements (``adapters.stores._sqlite_batched``)
sent to the store's writer thread, counted there; each waits for a group commit, so each is a trip.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.stores._sqlite_batch import GroupCommitter
from adapters.stores.sqlite import SQLiteStore
from switchboard.testing import GatewayUnderTest, running_gateway, wait_until
from tests.conftest_stores import REDIS_TEST_URL
from tests.fakes.slack import SECRET, FakeSlack
from tests.fakes.slack_inbound import event_body, message, signed_headers
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, message_params

BOT = "+15557654321"
ROUND_TRIPS = 6
#: the shared agent rate budget's calls per answer (``budget:`` keys), counted apart
BUDGET_CALLS = 3


class Monitor:
    """Every command Redis receives from clients (not those a Lua script runs inside)."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Monitor:
        self._client = aioredis.from_url(REDIS_TEST_URL)
        self._db = int(self._client.connection_pool.connection_kwargs.get("db", 0))
        self._task = asyncio.create_task(self._run())
        await self._ready.wait()
        return self

    async def _run(self) -> None:
        async with self._client.monitor() as monitor:
            self._ready.set()
            async for info in monitor.listen():
                if info.get("client_type") == "lua" or info.get("command", "").upper() == "MONITOR":
                    continue
                if info.get("db") != self._db:
                    continue  # MONITOR sees every database: other tests (xdist workers) use theirs
                self.commands.append(str(info["command"]).split())

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._client.aclose()


class SQLiteTrips:
    """Every statement or unit of statements the SQLite store queues for its writer thread."""

    def __init__(self, gw: GatewayUnderTest) -> None:
        store = gw.services.store
        assert isinstance(store, SQLiteStore)
        self._committer = store._db()
        self.commands: list[list[str]] = []

    async def __aenter__(self) -> SQLiteTrips:
        queued = GroupCommitter._queued

        def recording(sql: str, params: Any, fetch: bool, unit: Callable[..., Any] | None) -> Any:
            self.commands.append([unit.__qualname__] if unit is not None else sql.split()[:3])
            return queued(self._committer, sql, params, fetch, unit)

        self._committer._queued = recording  # type: ignore[method-assign]
        return self

    async def __aexit__(self, *_: object) -> None:
        del self._committer._queued


@pytest.fixture(params=["redis", "sqlite"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
        return
    client = aioredis.from_url(REDIS_TEST_URL)
    await client.flushdb()
    yield REDIS_TEST_URL
    await client.flushdb()
    await client.aclose()


async def count_one_answer(gw: GatewayUnderTest, send: Any, delivered: Any) -> list[list[str]]:
    """Round trips for one new conversation's answer, after a first one warmed scripts and caches."""
    await send(0)
    await wait_until(lambda: delivered(0), "the first answer")
    await gw.idle()
    sqlite = gw.settings.gateway.store.startswith("sqlite")
    async with SQLiteTrips(gw) if sqlite else Monitor() as mon:
        await send(1)
        await wait_until(lambda: delivered(1), "the second answer")
        await gw.idle()
        await asyncio.sleep(0.2)  # MONITOR's stream trails the commands themselves
    return mon.commands


def check(commands: list[list[str]]) -> None:
    budget = [c for c in commands if any(":budget:" in part for part in c)]
    store = [c for c in commands if c not in budget]
    assert len(store) <= ROUND_TRIPS, report(commands)
    assert len(budget) <= BUDGET_CALLS, report(commands)


def report(commands: list[list[str]]) -> str:
    return "\n".join(" ".join(c[:3]) for c in commands)


async def test_a_slack_answer_takes_at_most_six_round_trips(slack_fake: FakeSlack, store_url: str) -> None:
    config = {"type": "slack", "bot_token": slack_fake.token, "signing_secret": SECRET,
              "api_base": slack_fake.api_base, "update_interval": 1.0}
    async with running_gateway({"slack": config}, store=store_url) as gw, aiohttp.ClientSession() as http:
        async def send(n: int) -> None:
            body = event_body(message(f"hello {n}", channel=f"D{n}", user=f"U{n}", ts=f"{n}.1"), event_id=f"Ev{n}")
            async with http.post(f"{gw.url}/webhooks/slack", data=body, headers=signed_headers(body)) as r:
                assert r.status == 200

        commands = await count_one_answer(gw, send, lambda n: any(
            "You said" in m.text for m in slack_fake.thread(f"D{n}", None)))
    print(report(commands))
    check(commands)


async def test_a_twilio_answer_takes_at_most_six_round_trips(twilio_fake: FakeTwilio, store_url: str) -> None:
    creds = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
    channels = {"sms": {"type": "twilio-sms", "from": BOT, "api_base": twilio_fake.url, **creds}}
    async with running_gateway(channels, store=store_url) as gw, aiohttp.ClientSession() as http:
        async def send(n: int) -> None:
            status, _, _ = await twilio_fake.post(http, f"{gw.url}/webhooks/sms",
                                                  message_params(f"hello {n}", f"+1555000000{n}", BOT, f"SM{n}"))
            assert status == 200

        commands = await count_one_answer(gw, send, lambda n: twilio_fake.bodies(f"+1555000000{n}"))
    print(report(commands))
    check(commands)


@pytest.fixture
async def slack_fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def twilio_fake() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake
