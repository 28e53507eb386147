"""Scenarios 3 to 5: end-to-end throughput against the baseline, 1,000 streams at once, instances."""

from __future__ import annotations

import time
from typing import Any

from bench import stats
from bench.load import channel_of, phone_of
from bench.memory import footprint
from bench.params import Params
from bench.procs import Child, Sampler
from bench.stack import SLACK, SMS, Stack

PATHS = {"slack": (SLACK, channel_of), "twilio": (SMS, phone_of)}


async def _burst(stack: Stack, child: Child, kind: str, count: int, concurrency: int,
                 targets: list[str] | None = None, deadline: float = 180.0) -> dict[str, Any]:
    """``count`` first messages, ``concurrency`` in flight, until every answer is delivered."""
    path, key_of = PATHS[kind]
    urls = targets or [f"{child.info['url']}/webhooks/{path}"]
    cpu, helpers = child.cpu_seconds(), stack.helper_cpu()
    results = await stack.load(stack.spec(kind, urls, count, mode="burst", concurrency=concurrency))
    # Every acknowledged event must be answered; a refused one (a 503: the platform would retry
    # it) is owed nothing, and is counted in the errors column.
    await stack.wait_done(count - stats.errors(results), deadline)
    cpu = child.cpu_seconds() - cpu
    used = {name: (seconds - helpers[name] if name != "load generator" else seconds) / count * 1000
            for name, seconds in stack.helper_cpu().items()}
    done = stats.completions(await stack.calls())
    return {
        "helper_cpu_ms_per_answer": used,
        "throughput": stats.throughput(results, done),
        "errors": stats.errors(results),
        "delivered": len(done),
        "cpu_ms_per_answer": cpu / count * 1000,
        "ack_ms": stats.Summary.of([r[2] for r in results]).ms(),
        "end_to_end_ms": stats.Summary.of(stats.end_to_end(results, done, key_of)).ms(),
    }


async def throughput(stack: Stack, p: Params) -> dict[str, Any]:
    """Baseline and gateway (each store) on the Slack and Twilio paths, interleaved, repeated.

    Each repetition runs every system once, so drift on the machine hits all of them alike; the
    best repetition of each system is kept (the least disturbed one).
    """
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(p.throughput_repeats):
        for system in ("baseline", *p.stores):
            await stack.reset()
            server = stack.baseline() if system == "baseline" else stack.gateways(system)
            async with server as started:
                child = started if isinstance(started, Child) else started[0]
                for kind in PATHS:
                    await stack.reset()
                    result = await _burst(stack, child, kind, p.throughput_count, p.throughput_concurrency,
                                          deadline=p.deadline)
                    result["error_log_lines"] = len(child.log_lines("ERROR"))
                    runs.setdefault(f"{kind}/{system}", []).append(result)
    best = {name: max(rs, key=lambda r: r["throughput"]) for name, rs in runs.items()}
    for name, result in best.items():
        kind = name.split("/")[0]
        result["ratio"] = result["throughput"] / best[f"{kind}/baseline"]["throughput"]
        result["all_throughputs"] = [r["throughput"] for r in runs[name]]
    return {"stores": p.stores, "count": p.throughput_count, "concurrency": p.throughput_concurrency,
            "repeats": p.throughput_repeats, "systems": best}


async def scale(stack: Stack, p: Params) -> dict[str, Any]:
    """``scale_streams`` Slack conversations at once, the agent dripping tokens ``scale_token_delay`` apart.

    ``max_concurrency`` is raised to the number of streams so that they really run at once (the
    default, 64, would queue them); the emulator reports how many streams it had open at once.
    """
    await stack.reset(token_delay=p.scale_token_delay)
    async with stack.gateways("redis", max_concurrency=p.scale_streams) as (gateway,):
        idle_mb = gateway.rss_mb()
        sampler = Sampler(gateway)
        started = time.monotonic()
        async with sampler.running():
            result = await _burst(stack, gateway, "slack", p.scale_streams, 200, deadline=p.deadline)
        peak = gateway.peak_rss_mb()
        errors = len(gateway.log_lines("ERROR"))
    tokens = await stack.tokens()
    left = await footprint(stack.redis.url, p.scale_streams)
    return {
        "redis_bytes_per_conversation": left,
        "streams": p.scale_streams, "token_delay": p.scale_token_delay, **result,
        "idle_rss_mb": idle_mb, "peak_rss_mb": max(peak, sampler.peak), "error_log_lines": errors,
        "peak_open_streams": tokens["peak_streams"],
        "rss_series": [(t - started, mb) for t, mb in sampler.samples],
    }


async def instances(stack: Stack, p: Params) -> dict[str, Any]:
    """1, 2, 3 gateway processes on one Redis; the load generator spreads webhooks round-robin.
    Then ``serve --workers N`` on one port."""
    out: dict[str, Any] = {"count": p.instances_count, "runs": {}}
    for n in p.instances:
        await stack.reset()
        async with stack.gateways("redis", instances=n) as gateways:
            urls = [f"{g.info['url']}/webhooks/{SLACK}" for g in gateways]
            cpu = sum(g.cpu_seconds() for g in gateways)
            result = await _burst(stack, gateways[0], "slack", p.instances_count, 50, targets=urls,
                                  deadline=p.deadline)
            result["cpu_ms_per_answer"] = (sum(g.cpu_seconds() for g in gateways) - cpu) / p.instances_count * 1000
            result["error_log_lines"] = sum(len(g.log_lines("ERROR")) for g in gateways)
        out["runs"][str(n)] = result
    out["workers"] = {}
    for n in p.workers:  # ``serve --workers N``: one port, the kernel spreads the connections
        await stack.reset()
        async with stack.gateways("redis", workers=n) as gateways:
            url = f"{gateways[0].info['url']}/webhooks/{SLACK}"
            cpu = gateways[0].cpu_seconds()
            result = await _burst(stack, gateways[0], "slack", p.instances_count, 50, targets=[url],
                                  deadline=p.deadline)
            result["cpu_ms_per_answer"] = (gateways[0].cpu_seconds() - cpu) / p.instances_count * 1000
            result["error_log_lines"] = len(gateways[0].log_lines("ERROR"))
        out["workers"][str(n)] = result
    return out
