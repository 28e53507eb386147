"""Fixtures of the store tests: ``store`` runs each test against memory, SQLite and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.store import Store
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis
from tests.stores.support import ALL, Opener


@pytest.fixture(params=ALL)
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    kind: str = request.param
    if kind == "redis":
        flush_test_redis()
    base = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/state.db", "redis": REDIS_TEST_URL}
    # tmp_path is absolute, so the SQLite URL gets its four slashes.
    result = Opener(kind, base[kind], [])
    yield result
    for store in result.opened:
        await store.close()


@pytest.fixture
async def store(opener: Opener) -> Store:
    return await opener()



@pytest.fixture
async def raw_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    yield client
    await client.aclose()


