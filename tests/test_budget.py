"""The agent's rate budget: the bucket's rules (in this process and in Redis), its config, its queue.

Windows here are long (1000 s), so time-based refill adds a small fraction of a token during a
test and the counts are exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.stores.redis import RedisStore
from gateway.budget import Budget, LocalBucket, Observation, RateBucket, RateLimit, bucket_for, parse_rate_limit
from gateway.config import parse_settings
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.slots import TurnSlot
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis

SLOW = RateLimit(100, 1000.0)


@pytest.fixture(params=["local", "redis"])
async def bucket(request: pytest.FixtureRequest) -> AsyncIterator[RateBucket]:
    if request.param == "local":
        yield LocalBucket()
        return
    flush_test_redis()
    store = RedisStore(REDIS_TEST_URL)
    await store.initialize()
    yield store.rate_bucket()
    await store.close()


async def take_all(bucket: RateBucket, key: str = "k", limit: RateLimit = SLOW) -> list[int]:
    """Every ticket the bucket grants right now."""
    tickets = []
    while (grant := await bucket.take(key, limit)).wait <= 0:
        tickets.append(grant.ticket)
        assert len(tickets) <= limit.requests
    return tickets


async def test_before_any_answer_only_half_the_budget_goes(bucket: RateBucket) -> None:
    assert await take_all(bucket) == list(range(1, 51))
    grant = await bucket.take("k", SLOW)
    assert grant.wait > 0 and grant.ticket == 0


async def test_what_the_api_says_refills_the_bucket_minus_the_calls_in_flight(bucket: RateBucket) -> None:
    await take_all(bucket)  # tickets 1..50, all in flight
    for ticket in range(1, 11):  # ten answered; the tenth says 95 remain: 40 are still in flight
        await bucket.observe("k", SLOW, Observation(ticket, remaining=95, reset_at=time.time() + 10))
    assert len(await take_all(bucket)) == 55


async def test_answers_to_older_calls_are_stale_unless_the_window_was_full(bucket: RateBucket) -> None:
    await take_all(bucket)
    for ticket in range(11, 51):
        await bucket.observe("k", SLOW, Observation(ticket, remaining=40, reset_at=time.time() + 10))
    # Calls of several instances arrive out of ticket order: an older answer's count is stale.
    await bucket.observe("k", SLOW, Observation(5, remaining=5, reset_at=time.time() + 10))
    assert len(await take_all(bucket)) == 30  # 40, less tickets 1-10 in flight when ticket 50 answered
    await bucket.observe("k", SLOW, Observation(6, remaining=0, reset_at=time.time() + 10))
    assert (await bucket.take("k", SLOW)).wait > 9


async def test_an_estimate_of_zero_waits_for_the_calls_in_flight_not_for_the_reset(bucket: RateBucket) -> None:
    await take_all(bucket)  # 1..50
    for ticket in range(1, 49):  # 2 still in flight
        await bucket.observe("k", SLOW, Observation(ticket, remaining=2, reset_at=time.time() + 500))
    assert 0 < (await bucket.take("k", SLOW)).wait <= 10.0  # a slot, not the 500 s until the reset
    for ticket in (49, 50):
        await bucket.observe("k", SLOW, Observation(ticket, remaining=4, reset_at=time.time() + 500))
    assert len(await take_all(bucket)) == 4


async def test_nothing_left_blocks_until_the_reset_then_one_probe_goes(bucket: RateBucket) -> None:
    limit = RateLimit(100, 1.0)
    first = await bucket.take("k", limit)
    reset = time.time() + 0.3
    await bucket.observe("k", limit, Observation(first.ticket, remaining=0, reset_at=reset))
    grant = await bucket.take("k", limit)
    assert 0.2 < grant.wait <= 0.3 + 0.01 + 0.05  # until the reset, plus one slot (10 ms)
    await asyncio.sleep(grant.wait + 0.02)
    probe = await bucket.take("k", limit)
    assert probe.wait == 0 and probe.ticket == first.ticket + 1


async def test_a_429_blocks_for_its_retry_after(bucket: RateBucket) -> None:
    grant = await bucket.take("k", SLOW)
    await bucket.observe("k", SLOW, Observation(grant.ticket, retry_after=30))
    assert 29 < (await bucket.take("k", SLOW)).wait <= 30


async def test_each_api_key_has_its_own_bucket(bucket: RateBucket) -> None:
    await take_all(bucket, "a")
    assert (await bucket.take("b", SLOW)).wait == 0


async def test_an_api_reset_too_far_away_is_capped_at_one_window(bucket: RateBucket) -> None:
    limit = RateLimit(10, 2.0)
    grant = await bucket.take("k", limit)
    await bucket.observe("k", limit, Observation(grant.ticket, remaining=0, reset_at=time.time() + 3600))
    assert (await bucket.take("k", limit)).wait <= 2.0 + 0.2 + 0.05


def test_only_redis_shares_a_bucket_between_instances() -> None:
    assert isinstance(bucket_for(object()), LocalBucket)
    assert type(bucket_for(RedisStore(REDIS_TEST_URL))).__name__ == "RedisBucket"


@pytest.mark.parametrize(("text", "expected"), [
    ("100/10s", RateLimit(100, 10.0)), ("100/s", RateLimit(100, 1.0)), (" 6000 / 1m ", RateLimit(6000, 60.0)),
    ("5/1500ms", RateLimit(5, 1.5)), ("1/2h", RateLimit(1, 7200.0)), ("off", None),
])
def test_rate_limit_forms(text: str, expected: RateLimit | None) -> None:
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize("text", ["100", "fast", "0/10s", "100/0s", "-1/10s", "10/10 parsecs"])
def test_a_bad_rate_limit_is_one_readable_line(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"agent": {"rate_limit": text}}, env={})
    message = str(caught.value)
    assert message.startswith("agent.rate_limit: ") and "\n" not in message and repr(text) in message


def test_the_default_is_chatbase_s_documented_limit() -> None:
    assert parse_settings({}, env={}).agent.budget == RateLimit(100, 10.0)


async def test_waiting_calls_keep_their_order_and_show_in_metrics() -> None:
    metrics = Metrics()
    budget = Budget(LocalBucket(), "k", RateLimit(2, 0.2), metrics)  # uninformed: 1 at once, 5 per s
    order: list[int] = []

    async def call(n: int) -> None:
        await budget.acquire()
        order.append(n)

    tasks = [asyncio.create_task(call(n)) for n in range(4)]
    await asyncio.sleep(0.05)
    assert _sample(metrics, "switchboard_agent_budget_waiting") == 3  # one went, three queue
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert _sample(metrics, "switchboard_agent_budget_waiting") == 0
    assert _sample(metrics, "switchboard_agent_budget_wait_seconds_count") == 4
    assert _sample(metrics, "switchboard_agent_budget_wait_seconds_sum") > 0.3


def _sample(metrics: Metrics, name: str) -> Any:
    return metrics.registry.get_sample_value(name, {"agent": "default"})


async def test_a_turn_waiting_for_the_budget_lends_its_slot_to_another_turn() -> None:
    slots = asyncio.Semaphore(1)
    budget = Budget(LocalBucket(), "k", RateLimit(2, 0.4))  # uninformed: one call, then one per 0.4 s
    events: list[str] = []

    async def turn(name: str) -> None:
        async with TurnSlot(slots):
            events.append(f"{name} runs")
            await budget.acquire()
            events.append(f"{name} calls")

    await asyncio.gather(turn("a"), turn("b"), turn("c"))
    # b and c each started (and would show their typing signal) while a call was still waiting.
    assert events[:4] == ["a runs", "a calls", "b runs", "c runs"]
    assert events[4:] == ["b calls", "c calls"]
    assert not slots.locked()  # every slot came back


async def test_once_informed_only_the_api_refills_the_bucket(bucket: RateBucket) -> None:
    limit = RateLimit(100, 1.0)  # uninformed, time would add 50 tokens a second
    grant = await bucket.take("k", limit)
    await bucket.observe("k", limit, Observation(grant.ticket, remaining=2, reset_at=time.time() + 1))
    assert len(await take_all(bucket, limit=limit)) == 2
    await asyncio.sleep(0.2)  # a sliding window does not free slots at a steady rate
    assert (await bucket.take("k", limit)).wait > 0


async def test_an_empty_bucket_with_nothing_in_flight_sends_a_probe(bucket: RateBucket) -> None:
    grant = await bucket.take("k", SLOW)
    await bucket.observe("k", SLOW, Observation(grant.ticket, remaining=1, reset_at=time.time() + 500))
    assert len(await take_all(bucket)) == 1  # the one that remained
    # Its answer is stale-looking (it counts a call of another instance): no answer will come to
    # refill the bucket, yet the window had room, so one probe goes instead of waiting for a window.
    await bucket.observe("k", SLOW, Observation(1, remaining=1, reset_at=time.time() + 500))
    probe = await bucket.take("k", SLOW)
    assert probe.wait == 0 and probe.ticket == 3
    assert (await bucket.take("k", SLOW)).wait > 0  # one at a time, until its answer
