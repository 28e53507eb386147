"""Scenarios 1 and 2: how fast webhooks are acknowledged, and what the gateway adds to a stream."""

from __future__ import annotations

from typing import Any

from bench import stats
from bench.load import channel_of
from bench.params import Params
from bench.procs import Child
from bench.stack import SLACK, Stack


async def ack_latency(stack: Stack, p: Params) -> dict[str, Any]:
    """Waves of signed Slack events at once while every answer takes the agent ``ack_agent_latency`` s.

    The webhook must answer without waiting for the agent: it only verifies, journals and returns.
    The baseline app, which verifies and answers without writing anything, runs the same waves as
    the floor this machine and its HTTP stack allow.
    """
    out: dict[str, Any] = {"stores": p.stores, "waves": p.ack_waves, "wave_size": p.ack_wave_size,
                           "agent_latency": p.ack_agent_latency}
    count = p.ack_waves * p.ack_wave_size
    for system in ("baseline", *p.stores):
        await stack.reset(latency=p.ack_agent_latency)
        server = stack.baseline() if system == "baseline" else stack.gateways(system)
        async with server as started:
            child = started if isinstance(started, Child) else started[0]
            spec = stack.spec("slack", [f"{child.info['url']}/webhooks/{SLACK}"], count, mode="waves",
                              wave_size=p.ack_wave_size, wave_gap=p.pause)
            results = await stack.load(spec)
            if system != "baseline":
                # Every acknowledged event must also be answered (the agent is slow: this takes a while).
                await stack.wait_done(count - stats.errors(results), p.deadline)
            seconds = [r[2] for r in results]
            out[system] = {
                "requests": len(results),
                "errors": stats.errors(results),
                "answered": await stack.done() if system != "baseline" else None,
                "error_log_lines": len(child.log_lines("ERROR")),
                "ms": stats.Summary.of(seconds).ms(),
                "samples": seconds,
            }
    return out


async def overhead(stack: Stack, p: Params) -> dict[str, Any]:
    """Agent token timestamps (emulator) against Slack API call timestamps (fake Slack), per answer.

    Out-of-the-box settings: Slack edits at most once per ``update_interval`` (1 s) to respect its
    rate limit, counted from the "thinking" placeholder, and the agent takes ``overhead_agent_latency``
    (1 s) before its first token, like a real one: so the first token is shown at once, and what
    is measured is the gateway's own delay, not the throttle.
    """
    out: dict[str, Any] = {"stores": p.stores, "count": p.overhead_count, "rate": p.overhead_rate,
                           "token_delay": p.overhead_token_delay, "agent_latency": p.overhead_agent_latency}
    for store in p.stores:
        await stack.reset(latency=p.overhead_agent_latency, token_delay=p.overhead_token_delay)
        async with stack.gateways(store, slack_update_interval=p.overhead_agent_latency) as (gateway,):
            spec = stack.spec("slack", [f"{gateway.info['url']}/webhooks/{SLACK}"], p.overhead_count,
                              mode="rate", rate=p.overhead_rate)
            results = await stack.load(spec)
            await stack.wait_done(p.overhead_count - stats.errors(results), p.deadline)
        calls, tokens = await stack.calls(), await stack.tokens()
        first, last = [], []
        for user_id, first_token, last_token in tokens["answers"]:
            channel = channel_of(int(user_id.rsplit(".U", 1)[1]))
            updates = [c[0] for c in calls.get(channel, []) if c[1] == "chat.update"]
            if first_token is None or not updates:
                continue
            after = [t for t in updates if t >= first_token]
            if not after:
                continue
            first.append(min(after) - first_token)
            last.append(max(updates) - last_token)
        out[store] = {
            "answers": len(first),
            "errors": stats.errors(results),
            "first": stats.Summary.of(first).ms(),
            "last": stats.Summary.of(last).ms(),
            "first_samples": first,
            "last_samples": last,
        }
    return out
