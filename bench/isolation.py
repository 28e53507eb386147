"""Scenario 7: one conversation refused by the platform while hundreds of others flow (issue 17).

For Slack, Telegram and Twilio SMS in turn: a gateway in this process against the fake platform
(``tests/pressure.py``), ``isolation_conversations`` people writing at ``isolation_rate`` messages per
second, and after ``isolation_warmup`` seconds one of them refused (429 with ``Retry-After``) for
``isolation_refuse`` seconds. The other conversations' answer latency before and during the refusal
is the isolation figure; the refused conversation's answers, counted on the fake platform, are the
no-loss figure.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.params import Params
from bench.stack import Stack
from tests.pressure import PLATFORMS, percentile, run_isolation


async def isolation(stack: Stack, p: Params) -> dict[str, Any]:
    del stack  # in-process gateways against the fakes: nothing of the shared stack is needed
    out: dict[str, Any] = {"conversations": p.isolation_conversations, "rate": p.isolation_rate,
                           "refuse": p.isolation_refuse, "retry_after": p.isolation_retry_after, "runs": {}}
    for platform in PLATFORMS:
        began = time.monotonic()
        o = await run_isolation(platform, conversations=p.isolation_conversations, rate=p.isolation_rate,
                                warmup=p.isolation_warmup, refuse_for=p.isolation_refuse,
                                retry_after=p.isolation_retry_after, cooldown=p.isolation_cooldown,
                                progress=lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
        out["runs"][platform] = {
            "messages": len(o.before) + len(o.during) + len(o.after) + len(o.refused_answers),
            "p50_before_s": percentile(o.before, 0.5), "p95_before_s": percentile(o.before, 0.95),
            "p50_during_s": percentile(o.during, 0.5), "p95_during_s": percentile(o.during, 0.95),
            "p95_after_s": percentile(o.after, 0.95), "refused_calls": o.refused_calls,
            "refused_messages": len(o.refused_answers),
            "refused_answered_once": sum(1 for n in o.refused_answers.values() if n == 1),
            "unanswered": o.unanswered, "apologies": o.apologies, "duplicates": o.duplicates,
            "seconds": time.monotonic() - began,
        }
    return out
