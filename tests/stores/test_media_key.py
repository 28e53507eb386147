"""The media link key kept in the store: one key for every instance, kept across restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.media_links import SECRET_KEY, MediaLinks, load_key
from gateway.store import Store
from switchboard.testing import StoreOpener
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis
from tests.stores.support import CREATE


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreOpener[Store]]:
    kind: str = request.param
    if kind == "redis":
        flush_test_redis()
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/state.db", "redis": REDIS_TEST_URL}[kind]
    durable = kind != "memory"
    result = StoreOpener(CREATE[kind], url, shared=durable, durable=durable)
    yield result
    await result.close_all()


async def test_instances_starting_together_agree_and_a_restart_keeps_the_key(opener: StoreOpener[Store]) -> None:
    first, second = await opener.instances(await opener())
    keys = await asyncio.gather(load_key(None, first), load_key(None, second), load_key(None, first))
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    link = MediaLinks(keys[0], "https://gw.example", 60).link("tg", "file-1")
    if opener.durable:
        again = await load_key(None, await opener.reopen(second))
        assert again == keys[0]
        opaque, query = link.split("/media/tg/")[1].split("?")
        exp, sig = (part.split("=")[1] for part in query.split("&"))
        assert MediaLinks(again, "https://gw.example", 60).check("tg", opaque, exp, sig) == "file-1"


async def test_a_configured_secret_wins_and_is_never_stored(opener: StoreOpener[Store]) -> None:
    store = await opener()
    key = await load_key("a-configured-secret-of-some-length", store)
    assert key == await load_key("a-configured-secret-of-some-length", store)
    assert key != await load_key("another-configured-secret-value", store)
    assert await store.get_value(SECRET_KEY) is None
