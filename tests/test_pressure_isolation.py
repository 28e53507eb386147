"""Issue 17: one conversation refused by the platform (429 + Retry-After) must neither stall the
others nor lose its own answers.

Several hundred conversations flow through a real gateway against the fake platform while one of
them is refused for 30 s. The others' answer latency p95 during the refusal stays within 2 s of its
value before it (the user-visible promise; measured numbers are in docs/benchmarks.md, scenario 7),
and the refused conversation gets every answer exactly once after the refusal, with no apology.
``SWITCHBOARD_PRESSURE_LONG=1`` also runs the 10-minute refusal.
"""

from __future__ import annotations

import os

import pytest

from tests.pressure import PLATFORMS, percentile, run_isolation

pytestmark = pytest.mark.slow


@pytest.mark.timeout(400)
@pytest.mark.parametrize("platform", PLATFORMS)
async def test_one_refused_conversation_neither_stalls_the_others_nor_loses_answers(platform: str) -> None:
    outcome = await run_isolation(platform, conversations=300, rate=10.0, warmup=10.0, refuse_for=30.0,
                                  retry_after=5.0)
    before, during = percentile(outcome.before, 0.95), percentile(outcome.during, 0.95)
    summary = (f"{platform}: p95 before {before:.2f}s, during {during:.2f}s; refused calls "
               f"{outcome.refused_calls}; {outcome}")
    assert outcome.refused_calls > 0, "the refusal never reached the gateway: " + summary
    assert outcome.unanswered == 0 and outcome.apologies == 0 and outcome.duplicates == 0, summary
    assert outcome.refused_answers and set(outcome.refused_answers.values()) == {1}, summary
    assert during <= before + 2.0, summary


@pytest.mark.skipif(not os.environ.get("SWITCHBOARD_PRESSURE_LONG"), reason="10-minute refusal: opt in with "
                    "SWITCHBOARD_PRESSURE_LONG=1")
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_ten_minute_refusal_loses_nothing(platform: str) -> None:
    outcome = await run_isolation(platform, conversations=50, rate=2.0, warmup=5.0, refuse_for=600.0,
                                  retry_after=30.0, settle=300.0)
    summary = f"{platform}: {outcome}"
    assert outcome.unanswered == 0 and outcome.apologies == 0 and outcome.duplicates == 0, summary
    assert outcome.refused_answers and set(outcome.refused_answers.values()) == {1}, summary
