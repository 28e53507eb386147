"""``--profile``: py-spy samples of one gateway process during a Slack burst on Redis.

The collapsed stacks are kept (``profile-gateway.txt``, readable by speedscope or flamegraph.pl)
and summarised: the share of the busy samples spent in each part of the work.
"""

from __future__ import annotations

import asyncio
import collections
import re
import shutil
import signal
from pathlib import Path
from typing import Any

from bench.capacity import _burst
from bench.params import Params
from bench.stack import Stack

#: (label, substrings of a frame): a sample counts for the first label one of its frames matches
PARTS = (
    ("webhooks: HTTP server, signature, parsing, journal write", ("handle_webhook", "_handle_request")),
    ("Slack Web API calls (slack_sdk, aiohttp client)", ("SlackApi.call",)),
    ("agent stream (Chatbase client, SSE decoding)", ("adapters/chatbase/",)),
    ("logging", ("logging/__init__.py",)),
    ("store calls (redis-py), from turns and the dispatcher", ("adapters/stores/",)),
    ("turn logic, rendering, dispatcher", ("gateway/turns", "gateway/dispatch", "gateway/policy", "gateway/channel.py",
                                           "gateway/markup", "gateway/markdown", "gateway/text", "gateway/handoff",
                                           "gateway/commands", "gateway/tools", "channels/")),
)
IDLE = "select (selectors.py"
_LINE = re.compile(r":\d+\)")


def breakdown(collapsed: str) -> dict[str, float]:
    """Percent of busy samples per part; what matches no part is the event loop's own work
    (socket reads and writes, timers, callbacks that run outside any coroutine)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")
        if not number.isdigit() or IDLE in frames[-1]:
            continue
        part = next((label for label, needles in PARTS if any(n in f for f in frames for n in needles)),
                    "event loop: sockets, timers, callbacks")
        counts[part] += int(number)
    total = sum(counts.values()) or 1
    return {part: n * 100 / total for part, n in counts.most_common()}


async def profile_gateway(stack: Stack, p: Params, out: Path) -> dict[str, Any]:
    spy = shutil.which("py-spy")
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    out.parent.mkdir(parents=True, exist_ok=True)
    await stack.reset()
    async with stack.gateways("redis") as (gateway,):
        recorder = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(gateway.pid), "--output", str(out), "--format", "raw", "--rate", "200",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(1.0)  # py-spy attaches
        result = await _burst(stack, gateway, "slack", p.throughput_count, p.throughput_concurrency,
                              deadline=p.deadline)
        recorder.send_signal(signal.SIGINT)  # py-spy writes the file when interrupted
        await recorder.wait()
    return {"file": out.name, "throughput_while_profiled": result["throughput"], "breakdown": _read(out)}


def _read(out: Path) -> dict[str, float]:
    """The breakdown of the recorded file (empty when py-spy could not attach: it needs ptrace).

    The file is rewritten without line numbers (stacks merged per function), a tenth of the size.
    """
    if not out.exists():
        return {}
    merged = merge_lines(out.read_text())
    out.write_text(merged)
    return breakdown(merged)


def merge_lines(collapsed: str) -> str:
    """Collapsed stacks with ``(file.py:123)`` reduced to ``(file.py)`` and equal stacks summed."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        if number.isdigit():
            counts[_LINE.sub(")", stack)] += int(number)
    return "".join(f"{stack} {n}\n" for stack, n in counts.most_common())
