"""The store contract (``switchboard.testing.stores``) run against memory, a SQLite file and the real Redis.

Each suite states what the gateway relies on in terms of one protocol of ``gateway.store``; the
backends prove themselves exactly as a third-party store would. Store-specific checks are in
test_backends.py, the factories' URL handling below.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from adapters.stores import memory, sqlite
from adapters.stores import redis as redis_store
from gateway.errors import ConfigError
from gateway.store import Store
from switchboard.testing import StoreContract, StoreOpener
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis
from tests.stores.support import CREATE


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def opener(self) -> StoreOpener[Store]:
        return StoreOpener(memory.create, "memory://", shared=False, durable=False)


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def opener(self, tmp_path: Path) -> StoreOpener[Store]:
        # tmp_path is absolute, so the URL gets its four slashes.
        return StoreOpener(sqlite.create, f"sqlite:///{tmp_path}/state.db")


@pytest.mark.redis
class TestRedisStore(StoreContract):
    @pytest.fixture
    def opener(self) -> StoreOpener[Store]:
        flush_test_redis()
        return StoreOpener(redis_store.create, REDIS_TEST_URL)


# -- configuration -------------------------------------------------------------------------------


def test_entry_points_name_these_factories() -> None:
    found = {ep.name: ep.load() for ep in importlib.metadata.entry_points(group="switchboard.stores")}
    assert {name: found.get(name) for name in CREATE} == CREATE


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("memory", "sqlite:///x.db"),
        ("memory", "memory://?conversation_ttl=0"),
        ("sqlite", "sqlite://state.db"),
        ("sqlite", "sqlite:///"),
        ("sqlite", "sqlite:///x.db?dedup_ttl=soon"),
        ("sqlite", "sqlite:///x.db?dedup=7d"),
        ("redis", "redis://localhost:notaport/0"),
        ("redis", "redis://localhost/notadb"),
        ("redis", "redis://:s3cret@localhost/0?dedup_ttl=-1"),
        ("redis", "http://localhost:6379"),
    ],
)
def test_bad_url_is_one_line_config_error(kind: str, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CREATE[kind](url)
    message = str(caught.value)
    assert message.startswith("gateway.store: ") and "\n" not in message and "s3cret" not in message


@pytest.mark.parametrize("options", ["dedup_ttl=2d&conversation_ttl=12h", "dedup_ttl=90&conversation_ttl=30m"])
def test_duration_options_are_accepted(tmp_path: Path, options: str) -> None:
    sqlite.create(f"sqlite:///{tmp_path}/x.db?{options}")
    memory.create(f"memory://?{options}")


async def test_redis_url_hides_the_password() -> None:
    for url in (
        "redis://:s3cret@127.0.0.1:6379/15",
        "redis://bot:s3cret@127.0.0.1/15",
        "unix:///r.sock?password=s3cret",
    ):
        store = redis_store.create(url)
        assert "s3cret" not in store.url and "***" in store.url
        await store.close()
