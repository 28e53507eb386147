"""``--profile``: a py-spy flame graph of one gateway process during a Slack burst on Redis."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path
from typing import Any

from bench.capacity import _burst
from bench.params import Params
from bench.stack import Stack


async def profile_gateway(stack: Stack, p: Params, out: Path) -> dict[str, Any]:
    spy = shutil.which("py-spy")
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    out.parent.mkdir(parents=True, exist_ok=True)
    await stack.reset()
    async with stack.gateways("redis") as (gateway,):
        recorder = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(gateway.pid), "--output", str(out), "--rate", "100",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(1.0)  # py-spy attaches
        result = await _burst(stack, gateway, "slack", p.throughput_count, p.throughput_concurrency,
                              deadline=p.deadline)
        recorder.send_signal(signal.SIGINT)  # py-spy writes the file when interrupted
        await recorder.wait()
    return {"file": out.name, "throughput_while_profiled": result["throughput"]}
