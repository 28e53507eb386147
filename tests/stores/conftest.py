"""Fixtures of the backend-specific store tests (the contract suites bring their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from adapters.stores import redis as redis_store
from gateway.store import Store
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis


@pytest.fixture
async def redis_backed() -> AsyncIterator[Store]:
    """A Redis store on the emptied test database."""
    flush_test_redis()
    store = redis_store.create(REDIS_TEST_URL)
    await store.initialize()
    yield store
    await store.close()


@pytest.fixture
async def raw_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    yield client
    await client.aclose()
