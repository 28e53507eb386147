"""Scenario 6: a burst against the agent API's rate limit, with one and with several instances.

The emulator enforces ``budget_limit`` requests per ``budget_window`` seconds (Chatbase's 100 per
10 s in the full run) and answers 429 with ``Retry-After`` beyond it; the gateways run with the
same ``agent.rate_limit``. What the budget allows: with a sliding window, call ``k`` (from 0) can
start no earlier than ``floor(k / limit) * window``, so the last of ``count`` calls starts at
``floor((count - 1) / limit) * window`` at the earliest; the last answer then takes one answer's
time (the fastest answer of the run). The ratio compares the real time to the last answer with
that bound.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from bench import stats
from bench.load import channel_of
from bench.params import Params
from bench.stack import SLACK, Stack


async def budget(stack: Stack, p: Params) -> dict[str, Any]:
    out: dict[str, Any] = {"count": p.budget_count, "limit": p.budget_limit, "window": p.budget_window, "runs": {}}
    rate_limit = {"enforced": True, "max": p.budget_limit, "window": p.budget_window}
    for n in p.budget_instances:
        await stack.reset(rate_limit=rate_limit)
        began = time.monotonic()
        store = "redis" if n > 1 else "sqlite"
        agent = {"rate_limit": f"{p.budget_limit}/{p.budget_window:g}s"}
        async with stack.gateways(store, instances=n, agent=agent) as gateways:
            urls = [f"{g.info['url']}/webhooks/{SLACK}" for g in gateways]
            sent = await stack.load(stack.spec("slack", urls, p.budget_count, mode="burst", concurrency=50))
            await stack.wait_done(p.budget_count, p.deadline)
            errors = sum(len(g.log_lines("ERROR")) for g in gateways)
        done = stats.completions(await stack.calls())
        tokens = await stack.tokens()
        emulator = await stack.emulator_state()
        calls = [r for r in emulator["requests"] if r["path"].endswith("/chat")]
        paths = Counter(r["method"] + " " + re.sub(r"/conversations/[^/]+", "/conversations/{id}", r["path"])
                        for r in emulator["requests"])
        refused = int(emulator["faults"]["rate_limit"]["refused"])
        e2e = stats.end_to_end(sent, done, channel_of)
        first_sent = min(r[1] for r in sent)
        last = max(done.values()) - first_sent
        bound = (p.budget_count - 1) // p.budget_limit * p.budget_window + min(e2e)
        out["runs"][str(n)] = {
            "store": store, "delivered": len(done), "webhook_errors": stats.errors(sent),
            "agent_calls": len(calls), "api_requests": dict(paths), "refused": refused,
            "refused_share": refused / max(1, len(calls)),
            "last_answer_s": last, "budget_bound_s": bound, "ratio": last / bound,
            "fastest_answer_s": min(e2e), "error_log_lines": errors, "seconds": time.monotonic() - began,
            # when each answer's first token was written, seconds after the first webhook was sent
            "answer_starts_s": sorted(round(a[1] - first_sent, 3) for a in tokens["answers"] if a[1] is not None),
        }
    return out
