"""The prose of docs/benchmarks.md: method, causes of missed goals, and what profiling changed.

Kept apart from the numbers (``bench.report``) so a re-run rewrites the tables and figures and keeps
the analysis; the cause of a missed goal is printed only when that run missed it.
"""

INTRO = """# Benchmarks

Speed is part of the product: the gateway must add almost nothing to the agent's own latency,
acknowledge webhooks at once under load, and carry many conversations on a small machine. This page
is written by the benchmark suite itself; reproduce it with

```sh
{command}
```

(about 10 minutes; `python -m bench --quick` is the few-second smoke version that CI runs through
`tests/test_bench_smoke.py`, `python -m bench --only throughput,scale` runs some scenarios, and
`python -m bench --profile` also records a py-spy profile of the gateway during the throughput run).

How it works: every part is a separate process on this machine: `switchboard serve` (one or
several), the Chatbase API emulator (`bench/agent.py`: the stock emulator, plus timestamps of the
tokens it writes), the fake Slack and Twilio APIs of the test suite (`bench/platform.py`, recording
when each call arrived), a private `redis-server`, the load generator (`bench/load.py`, aiohttp,
signing every webhook with the platforms' own SDK code) and, for scenario 3, the baseline app
(`bench/baseline.py`). Each figure is a distribution or a ratio measured in the same run as what it
is compared with; processes in different roles compare timestamps through `CLOCK_MONOTONIC`, which
Linux keeps system-wide.
"""

ACK = """**Why the goal was missed.** See the profile notes below; the webhook path is signature check,
one journal write, and the response."""

OVERHEAD = """**Why the goal was missed.** The last-token interval includes the store writes that make the
answer durable before it is shown (the answer in the journal, the conversation for the next turn);
see the profile notes below."""

THROUGHPUT = """**Why the goal was missed.** See the profile notes below."""

SCALE = ""

MEMORY = ""

INSTANCES = ""

PROFILING = """## Profiling and what it changed

(written after the run; see below)
"""
