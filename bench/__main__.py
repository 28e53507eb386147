"""``python -m bench``: run the benchmark scenarios and write docs/benchmarks.md.

Options: ``--quick`` (tiny numbers: the smoke run),
``--only ack,overhead,throughput,scale,memory,instances,budget,isolation`` (the other sections of the
page are kept from the last results.json; ``scale`` includes ``memory``, Redis bytes per identity),
``--docs DIR`` (where benchmarks.md and benchmarks/ go; default ``docs``), ``--profile`` (py-spy
flame graph of the gateway during one throughput run), ``--report-only`` (rewrite the page from
``docs/benchmarks/results.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import capacity, isolation, latency, machine, pressure, report
from bench.memory import redis_memory
from bench.params import FULL, QUICK, Params
from bench.procs import REPO
from bench.profile import profile_gateway
from bench.stack import Stack

SCENARIOS = ("ack", "overhead", "throughput", "scale", "memory", "instances", "budget", "isolation")


async def run(params: Params, only: set[str], workdir: Path, profile_to: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine.describe(workdir), "quick": params is QUICK,
                               "load_before": os.getloadavg()[0]}
    started = time.monotonic()
    async with Stack(workdir) as stack:
        stack.trailing = params.pause
        steps = [
            ("ack", latency.ack_latency),
            ("overhead", latency.overhead),
            ("throughput", capacity.throughput),
            ("scale", capacity.scale),
            ("instances", capacity.instances),
            ("budget", pressure.budget),
            ("isolation", isolation.isolation),
        ]
        for name, scenario in steps:
            if name not in only:
                continue
            began = time.monotonic()
            print(f"bench: {name}...", file=sys.stderr, flush=True)
            results[name] = await scenario(stack, params)
            print(f"bench: {name} took {time.monotonic() - began:.0f}s", file=sys.stderr, flush=True)
        if "scale" in only or "memory" in only:  # Redis memory per identity: part of section 4
            results["memory"] = await redis_memory(stack.redis.url, params.scale_identities)
        if profile_to is not None:
            results["profile"] = await profile_gateway(stack, params, profile_to)
    results["seconds"] = time.monotonic() - started
    results["load_after"] = os.getloadavg()[0]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny numbers: checks the harness, measures nothing")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where benchmarks.md is written")
    parser.add_argument("--profile", action="store_true", help="record a py-spy profile of the gateway")
    parser.add_argument("--report-only", action="store_true", help="rewrite the page from the last results.json")
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((args.docs / "benchmarks" / "results.json").read_text())
    else:
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = only - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
        profile_to = args.docs / "benchmarks" / "profile-gateway.txt" if args.profile else None
        try:
            results = asyncio.run(run(QUICK if args.quick else FULL, only, workdir, profile_to))
        except BaseException:
            print(f"bench: failed; logs kept in {workdir}", file=sys.stderr)
            raise
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.report_only and not args.quick:
        results = _keep_earlier_sections(results, args.docs / "benchmarks" / "results.json")
    page = report.write(results, args.docs)
    print(f"bench: wrote {page}", file=sys.stderr)
    return 0


def _keep_earlier_sections(results: dict[str, Any], earlier: Path) -> dict[str, Any]:
    """A partial run (``--only``) keeps the sections, machine and run time of the last full run."""
    missing = [name for name in SCENARIOS if name not in results]
    if not missing or not earlier.exists():
        return results
    previous: dict[str, Any] = json.loads(earlier.read_text())
    merged = {**previous, **{k: v for k, v in results.items() if k in SCENARIOS}}
    return merged


if __name__ == "__main__":
    sys.exit(main())
