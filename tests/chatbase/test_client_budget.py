"""The client paces itself with the API key's budget and feeds back what each answer says."""

from __future__ import annotations

import time

import aiohttp
from multidict import CIMultiDict

from adapters.chatbase.transport import rate_observation
from adapters.emulator import Emulator
from gateway.budget import Budget, LocalBucket, RateLimit
from gateway.metrics import Metrics
from tests.chatbase.support import collect, finish_of, make_client, text_of

#: the budget metrics carry the agent's name; [agent] is "default"
DEFAULT = {"agent": "default"}


async def test_a_429_is_waited_out_through_the_budget_and_counted(
    session: aiohttp.ClientSession, base_url: str, emulator: Emulator
) -> None:
    metrics = Metrics()
    budget = Budget(LocalBucket(), "key", RateLimit(100, 10.0), metrics)
    client = make_client(session, base_url, budget=budget)
    emulator.faults.fail_next(429, retry_after=0.3)
    events = await collect(client.chat("hello"))
    assert text_of(events) == 'You said: "hello". This is message 1 of this conversation.'
    assert finish_of(events).conversation_id
    assert metrics.registry.get_sample_value("switchboard_agent_rejected_total", DEFAULT) == 1
    # The retry waited for the budget, which honoured Retry-After.
    assert metrics.registry.get_sample_value("switchboard_agent_budget_wait_seconds_sum", DEFAULT) >= 0.25


async def test_the_api_s_headers_inform_the_budget(session: aiohttp.ClientSession, base_url: str) -> None:
    bucket = LocalBucket()
    client = make_client(session, base_url, budget=Budget(bucket, "key", RateLimit(100, 10.0)))
    for n in range(3):
        await collect(client.chat(f"m{n}"))
    state = bucket._states["key"]
    assert state.informed > time.time() and state.answered == state.seq == 3
    assert state.tokens == 97  # what the emulator said remained, nothing in flight


def test_rate_headers_are_read_in_every_form() -> None:
    now = time.time()
    reset_ms = str(int(now * 1000) + 2500)
    ms = rate_observation(7, 200, CIMultiDict({"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": reset_ms}))
    assert ms.ticket == 7 and ms.remaining == 4 and ms.retry_after is None
    assert ms.reset_at is not None and abs(ms.reset_at - (now + 2.5)) < 0.01
    seconds = rate_observation(1, 200, CIMultiDict({"X-RateLimit-Reset": str(int(now) + 3)}))
    assert seconds.reset_at == int(now) + 3 and seconds.remaining is None
    relative = rate_observation(1, 429, CIMultiDict({"X-RateLimit-Reset": "5", "Retry-After": "2"}))
    assert relative.reset_at is not None and abs(relative.reset_at - (now + 5)) < 1 and relative.retry_after == 2
    nothing = rate_observation(1, 200, CIMultiDict({"X-RateLimit-Remaining": "lots"}))
    assert (nothing.remaining, nothing.reset_at, nothing.retry_after) == (None, None, None)
