"""Pipelined journal writes on Redis: concurrent webhooks share round trips, and each hears its own answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rex

from adapters.stores import redis as redis_store
from adapters.stores._redis_batch import Pipeline, ScriptBatcher
from gateway.errors import StoreUnavailable
from gateway.store import Store
from tests.conftest_stores import PrivateRedis
from tests.stores.support import entry, pending_keys

pytestmark = pytest.mark.redis

#: appends ARGV[1] to the list KEYS[1] and answers its length; 'boom' is an error reply, 'slow'
#: keeps Redis busy for 3 s first (long enough to kill it in the middle of a pipeline)
APPEND = """
if ARGV[1] == 'boom' then return redis.error_reply('boom') end
if ARGV[1] == 'slow' then
  local t0 = redis.call('TIME')
  repeat local t = redis.call('TIME') until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 3000000
end
redis.call('RPUSH', KEYS[1], ARGV[1])
return redis.call('LLEN', KEYS[1])
"""


def _batcher(store: Store) -> Pipeline:
    """The pipeline the webhooks' journal writes go through."""
    assert isinstance(store, redis_store.RedisStore)
    return store._add.pipeline


async def test_concurrent_webhooks_share_round_trips_and_the_first_of_two_duplicates_wins(
        redis_backed: Store) -> None:
    # 200 events in 10 conversations, each delivered twice (Slack retries), all at once: the
    # copy sent first is journaled, the other is told "already journaled", whatever the batching.
    calls = []
    for n in range(200):
        calls.append((f"e{n}", "first"))
        if n >= 3:
            calls.append((f"e{n - 3}", "second"))  # its original is in the same burst, just before
    calls += [(f"e{n}", "second") for n in range(197, 200)]
    results = await asyncio.gather(*(
        redis_backed.journal_add(entry(key, scope=f"c{int(key[1:]) % 10}", text=text)) for key, text in calls))
    assert results == [text == "first" for _, text in calls]
    pending = await redis_backed.journal_pending()
    assert sorted(e.event.key for e in pending) == sorted(f"e{n}" for n in range(200))
    assert {e.event.text for e in pending} == {"first"}
    for c in range(10):  # each conversation's entries in the order they arrived
        head = await redis_backed.journal_head(f"tg:c{c}")
        assert head is not None and head.event.key == f"e{c}"
    assert [e.event.key for e in pending if e.event.scope == "c3"] == [f"e{n}" for n in range(3, 200, 10)]
    batcher = _batcher(redis_backed)
    assert batcher.pipelines < batcher.calls / 10, f"{batcher.pipelines} round trips for {batcher.calls} writes"
    # Later deliveries, one at a time, are still deduplicated against the burst.
    assert not await redis_backed.journal_add(entry("e5", text="third"))
    assert await redis_backed.journal_add(entry("e200"))


async def test_a_failing_script_call_fails_only_its_own_caller(raw_redis: aioredis.Redis) -> None:
    await raw_redis.flushdb()
    batcher = ScriptBatcher(raw_redis, APPEND)
    values: list[object] = ["a", "b", "boom", "c", None, "d"]  # None: no value Redis can take
    results = await asyncio.gather(*(batcher(["list"], [v]) for v in values), return_exceptions=True)
    assert results[:2] == [1, 2] and results[3] == 3 and results[5] == 4
    assert isinstance(results[2], rex.ResponseError) and "boom" in str(results[2])
    assert isinstance(results[4], rex.DataError)
    assert await raw_redis.lrange("list", 0, -1) == ["a", "b", "c", "d"]
    # Any number of keys and arguments: the batcher only passes them on.
    two_keys = ScriptBatcher(raw_redis, "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]}")
    assert await two_keys(["k1", "k2"], ["x", 2, "z"]) == ["k1", "k2", "x", "2", "z"]
    await batcher.close()


async def test_a_script_redis_forgot_is_loaded_again_and_the_calls_still_run_in_order(
        redis_backed: Store, raw_redis: aioredis.Redis) -> None:
    assert await redis_backed.journal_add(entry("before"))
    await raw_redis.script_flush()  # as after a Redis restart
    results = await asyncio.gather(*(redis_backed.journal_add(entry(k)) for k in ["x", "y", "x", "z", "y"]))
    assert results == [True, True, False, True, False]
    assert await pending_keys(redis_backed) == ["before", "x", "y", "z"]


async def test_redis_dying_with_a_batch_in_flight_fails_every_caller_of_it() -> None:
    with PrivateRedis() as server:
        store = redis_store.RedisStore(server.url)
        assert await store.journal_add(entry("early"))
        server.pause()  # the next pipeline is sent and never answered
        calls = [asyncio.create_task(store.journal_add(entry(f"w{n}"))) for n in range(50)]
        while _batcher(store)._queue or _batcher(store)._writer is None:
            await asyncio.sleep(0.01)  # until the writer has taken the batch
        server.stop()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        server.start()  # empty again (no persistence): the platform's retries are all new
        assert await asyncio.gather(*(store.journal_add(entry(f"w{n}")) for n in range(50))) == [True] * 50
        await store.close()


async def test_no_caller_is_told_its_write_happened_unless_redis_kept_it(tmp_path: Path) -> None:
    # Killed in the middle of a pipeline: the calls before the slow one ran but were not answered
    # (Redis answers a client's pipeline after its script returns), so every caller hears an error.
    with PrivateRedis(data_dir=str(tmp_path)) as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        batcher = ScriptBatcher(client, APPEND)
        assert await asyncio.gather(*(batcher(["list"], [v]) for v in "ab")) == [1, 2]
        await client.config_set("busy-reply-threshold", 50)  # others get BUSY while a script runs
        calls = [asyncio.create_task(batcher(["list"], [v])) for v in ["c", "d", "slow", "e"]]
        probe = aioredis.Redis.from_url(server.url)
        while True:  # until Redis is inside the slow script, i.e. c and d ran
            try:
                await probe.ping()
            except rex.ResponseError as exc:
                assert str(exc).startswith("BUSY")
                break
            await asyncio.sleep(0.01)
        server.stop()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, rex.ConnectionError) for r in results), results
        server.start()
        # What was acknowledged is kept. c and d may be too (Redis may write its file while busy):
        # their callers were told to retry, and the journal's dedup makes a retry harmless.
        assert await client.lrange("list", 0, -1) in (["a", "b"], ["a", "b", "c", "d"])
        for c in (client, probe):
            await c.aclose()


async def test_a_caller_that_gave_up_before_its_call_was_sent_is_not_written() -> None:
    # A webhook whose store time ran out got a 503; the platform retries it and it is new then.
    with PrivateRedis() as server:
        store = redis_store.RedisStore(server.url)
        assert await store.journal_add(entry("early"))  # connected
        server.pause()
        first = asyncio.create_task(store.journal_add(entry("in-flight")))
        while _batcher(store)._writer is None or _batcher(store)._queue:
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.journal_add(entry("gave-up")), 0.1)
        server.resume()
        assert await first
        assert await store.journal_add(entry("later"))
        assert await pending_keys(store) == ["early", "in-flight", "later"]
        assert await store.journal_add(entry("gave-up"))  # the retry
        await store.close()
