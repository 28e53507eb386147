"""The benchmark suite still runs: ``python -m bench --quick``, its smoke version, end to end.

The real benchmark (``python -m bench``, docs/benchmarks.md) is too slow and noisy for CI. This
runs every scenario with tiny numbers, in the same processes (gateways, emulator, fake Slack and
Twilio, a private redis-server, the load generator, the baseline app), so the harness cannot rot
unnoticed; it asserts what the harness must get right, never how fast anything was.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server"),
]


def test_quick_benchmark_runs_every_scenario_and_writes_the_page(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--docs", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=160, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    page = (tmp_path / "benchmarks.md").read_text()
    for heading in ("## The machine", "## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6.", "## 7."):
        assert heading in page
    results = json.loads((tmp_path / "benchmarks" / "results.json").read_text())

    # Every webhook was acknowledged and every answer delivered, in every scenario.
    ack = results["ack"]["redis"]
    assert (ack["errors"], ack["answered"]) == (0, ack["requests"])
    assert results["ack"]["baseline"]["errors"] == 0
    overhead = results["overhead"]["redis"]
    assert overhead["errors"] == 0
    assert overhead["answers"] == results["overhead"]["count"]  # each answer's tokens matched to its Slack calls
    assert overhead["first"]["p50"] >= 0 and overhead["last"]["p50"] >= 0  # calls come after the tokens
    count = results["throughput"]["count"]
    systems = results["throughput"]["systems"]
    assert set(systems) == {f"{kind}/{system}" for kind in ("slack", "twilio") for system in ("baseline", "redis")}
    for name, system in systems.items():
        assert (system["errors"], system["delivered"]) == (0, count), name
        # /proc counts CPU in 10 ms ticks: the ten answers of the small baseline server can fit in
        # less than one (it happened once the suite ran in parallel), so only the gateway must show some.
        assert system["throughput"] > 0 and system["cpu_ms_per_answer"] >= 0, name
        assert name.endswith("/baseline") or system["cpu_ms_per_answer"] > 0, name
    scale = results["scale"]
    assert (scale["errors"], scale["delivered"]) == (0, scale["streams"])
    assert scale["peak_rss_mb"] > 0 and scale["peak_open_streams"] >= 1
    for processes, run in results["instances"]["runs"].items():
        assert (run["errors"], run["delivered"]) == (0, results["instances"]["count"]), processes
    budget = results["budget"]
    for processes, run in budget["runs"].items():  # a burst against the enforced limit: all answered
        assert run["delivered"] == budget["count"] and run["agent_calls"] >= budget["count"], processes
    for platform, run in results["isolation"]["runs"].items():  # one refused conversation loses nothing
        assert (run["unanswered"], run["apologies"], run["duplicates"]) == (0, 0, 0), platform
        assert run["refused_answered_once"] == run["refused_messages"] > 0, platform
    memory = results["memory"]
    assert memory["linked"]["memory_usage_per_identity"] > memory["unlinked"]["memory_usage_per_identity"] > 0
