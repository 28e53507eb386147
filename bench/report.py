"""docs/benchmarks.md from one run's results (tables, figures, goals), plus results.json beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import notes

PROFILED = "a Slack burst like scenario 3's, Redis store"
HELPERS = ("emulator", "fake APIs", "redis", "load generator")
COMMAND = "pip install -e '.[bench]' && python -m bench"


def _figure(name: str, result: dict[str, Any], out: Path) -> str | None:
    """Draw one figure; None when matplotlib is missing (the CI smoke run installs only the dev extra)."""
    try:
        from bench import plots
    except ImportError:
        return None
    draw: Any = getattr(plots, name)
    return str(draw(result, out))


def _image(caption: str, figure: str | None) -> str:
    if figure is None:
        return "(figure not drawn: matplotlib is missing; `pip install -e '.[bench]'`)"
    return f"![{caption}](benchmarks/{figure})"


def _ok(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _ms(summary: dict[str, float]) -> str:
    return " | ".join(f"{summary[k]:.1f}" for k in ("p50", "p90", "p99", "max"))


def machine(m: dict[str, Any], results: dict[str, Any]) -> str:
    return "\n".join([
        "## The machine",
        "",
        "Every absolute number below is **this machine's** and changes with the hardware; the ratios "
        "and the goals are what carry over. All processes (gateway, emulator, fake APIs, Redis, load "
        "generator, baseline) shared it.",
        "",
        "| | |",
        "|---|---|",
        f"| CPUs | {m['cpus']} x {m['cpu_model']} |",
        f"| memory | {m['memory_gb']} GB |",
        f"| kernel | Linux {m['kernel']} |",
        f"| Python | {m['python']} (aiohttp {m['aiohttp']}, redis-py {m['redis_py']}) |",
        f"| Redis | {m['redis_server']} (a private `redis-server` started by the bench, no persistence) |",
        f"| SQLite | {m['sqlite']}, database on {m['state_filesystem']} (WAL, `synchronous=FULL`) |",
        f"| run time | {results['seconds'] / 60:.1f} minutes for the whole suite |",
        f"| load average (1 min) | {results['load_before']:.2f} before the run, {results['load_after']:.2f} after "
        "(anything else running on the machine shows up in the absolute numbers) |",
        "",
    ])


def ack(r: dict[str, Any], out: Path) -> str:
    figure = _figure("ack", r, out)
    floor = r["baseline"]["ms"]["p99"]
    met = all(r[s]["ms"]["p99"] <= 1.5 * floor and r[s]["errors"] == 0 for s in r["stores"])
    rows = [f"| gateway, {s} | {r[s]['requests']} | {r[s]['errors']} | {_ms(r[s]['ms'])} | "
            f"{r[s]['ms']['p99'] / floor:.1f}x | {r[s]['answered']} |" for s in r["stores"]]
    rows.append(f"| baseline | {r['baseline']['requests']} | {r['baseline']['errors']} | "
                f"{_ms(r['baseline']['ms'])} | 1.0x | (not awaited) |")
    return "\n".join([
        "## 1. Acknowledging webhooks while the agent is slow",
        "",
        f"{r['waves']} waves of {r['wave_size']} signed Slack events sent at once (0.5 s apart), while the "
        f"agent takes {r['agent_latency']:g} s before each answer. The webhook only verifies the "
        "signature, journals the event and answers; the slow agent must not show in this time. "
        "The load generator keeps its connections open (like Slack's senders), so the times are the "
        "gateway's work plus queueing behind the other requests of the wave, as seen by the client.",
        "",
        f"Goal (issue 18): p99 at most 1.5 times the baseline's, and no errors — {_ok(met)}.",
        "",
        "| system | requests | errors | p50 ms | p90 ms | p99 ms | max ms | p99 vs baseline | answered later |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        _image("webhook response time distribution", figure),
        "",
        notes.ACK if not met else notes.ACK_MET,
        "",
    ])


def overhead(r: dict[str, Any], out: Path) -> str:
    figure = _figure("overhead", r, out)
    met = all(r[s][k]["p99"] < 20 for s in r["stores"] for k in ("first", "last"))
    rows = []
    for s in r["stores"]:
        rows.append(f"| {s} | first token → first Slack call | {r[s]['answers']} | {_ms(r[s]['first'])} |")
        rows.append(f"| {s} | last token → final Slack call | {r[s]['answers']} | {_ms(r[s]['last'])} |")
    return "\n".join([
        "## 2. What the gateway adds to a stream",
        "",
        f"{r['count']} Slack conversations arriving at {r['rate']:g} per second; the agent takes "
        f"{r['agent_latency']:g} s before its first token and then sends word-sized tokens "
        f"{r['token_delay'] * 1000:.0f} ms apart. The emulator notes when it wrote the first and the last "
        "token of each answer, the fake Slack API when each call arrived (both read the same system-wide "
        "monotonic clock). Slack settings are the defaults: a placeholder is posted at once, then the "
        "message is edited at most once per `update_interval` (1 s) to respect Slack's rate limit; as the "
        "agent's first token comes after that interval, as with real agents, it is shown at once. The final "
        "call comes after the answer was saved in the journal and the conversation in the store.",
        "",
        f"Goal: p99 under 20 ms for both — {_ok(met)}.",
        "",
        "| store | interval | answers | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        _image("overhead distributions", figure),
        "",
        notes.OVERHEAD if not met else notes.OVERHEAD_CONTEXT,
        "",
    ])


def throughput(r: dict[str, Any], out: Path) -> str:
    figure = _figure("throughput", r, out)
    systems = r["systems"]
    gateways = [systems[f"{k}/{s}"] for k in ("slack", "twilio") for s in r["stores"]]
    met = all(x["ratio"] >= 0.5 for x in gateways)
    cpu_met = all(x["cpu_ms_per_answer"] <= 1.3 for x in gateways)
    rows = []
    for name in [f"{k}/{s}" for k in ("slack", "twilio") for s in ("baseline", *r["stores"])]:
        x = systems[name]
        kind, system = name.split("/")
        label = f"{kind} / {'baseline' if system == 'baseline' else 'gateway, ' + system}"
        rows.append(f"| {label} | {x['throughput']:.0f} | {x['ratio'] * 100:.0f}% | {x['cpu_ms_per_answer']:.2f} | "
                    f"{x['errors']} | {x['delivered']} | {x['end_to_end_ms']['p50']:.0f} |")
    return "\n".join([
        "## 3. Throughput against a bare baseline",
        "",
        f"A burst of {r['count']} signed webhooks ({r['concurrency']} in flight), each the first message "
        "of its own conversation, through the whole path: signature, journal, agent stream, channel API. "
        "The agent answers at once, so this measures the gateway's own cost. The baseline "
        "(`bench/baseline.py`) is a hand-written aiohttp app doing only the essential work: verify the "
        "signature, acknowledge, call the agent, post the reply once. It has no journal (an acknowledged "
        "event is lost in a crash), no deduplication, no ordering, no placeholder or streaming edits, no "
        "retries, no formatting. Systems run interleaved, "
        f"{r['repeats']} times each, best run kept; throughput counts from the first webhook sent to the "
        "last answer delivered. CPU is the serving process's own (user + system) per answer.",
        "",
        f"Goals (issue 18): at least 50% of the baseline's throughput per process — {_ok(met)}; "
        f"gateway CPU per answer at most 1.3 ms — {_ok(cpu_met)}.",
        "",
        "| path / system | answers/s (this machine) | % of baseline | CPU ms per answer | webhook errors | "
        "delivered | end-to-end p50 ms |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Where the machine's CPU went, in milliseconds per answer (the serving process is the gateway "
        "or the baseline; the others are the same programs for every system):",
        "",
        "| path / system | serving process | " + " | ".join(HELPERS) + " |",
        "|---|---|" + "---|" * len(HELPERS),
        *[f"| {name.replace('/', ' / ')} | {systems[name]['cpu_ms_per_answer']:.2f} | "
          + " | ".join(f"{systems[name]['helper_cpu_ms_per_answer'][h]:.2f}" for h in HELPERS) + " |"
          for name in systems],
        "",
        _image("throughput relative to the baseline", figure),
        "",
        notes.THROUGHPUT if not (met and cpu_met) else "",
        "",
    ])


def scale(r: dict[str, Any], memory: dict[str, Any], out: Path) -> str:
    figure = _figure("scale", r, out)
    streams_met = r["delivered"] == r["streams"] and r["peak_rss_mb"] < 300
    unlinked, linked = memory["unlinked"], memory["linked"]
    left = {k: v for k, v in r["redis_bytes_per_conversation"].items() if v >= 1}  # not seq, locks
    memory_met = unlinked["memory_usage_per_identity"] < 300 and linked["memory_usage_per_identity"] < 300
    by_key = ", ".join(f"`{k}` {v:.0f}" for k, v in linked["by_key"].items())
    return "\n".join([
        "## 4. Scale: many streams at once, and Redis memory per identity",
        "",
        f"{r['streams']} Slack conversations started together (Redis store), the agent writing each answer's "
        f"tokens {r['token_delay'] * 1000:.0f} ms apart; `max_concurrency` is raised to {r['streams']} so they "
        "are not queued. RSS is sampled every 100 ms (and the kernel's peak, VmHWM, read at the end).",
        "",
        f"Goal: all complete, gateway RSS under 300 MB — {_ok(streams_met)}.",
        "",
        "| conversations | delivered | webhook errors | agent streams open at once (peak) | RSS idle MB | "
        "RSS peak MB |",
        "|---|---|---|---|---|---|",
        f"| {r['streams']} | {r['delivered']} | {r['errors']} | {r['peak_open_streams']} | "
        f"{r['idle_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} |",
        "",
        _image("gateway RSS during the run", figure),
        "",
        notes.SCALE,
        "",
        f"**Redis memory per idle identity** over {memory['identities']:,} identities, written through the "
        "store's own methods with Slack-sized ids (UUID conversation and message ids). An idle identity is "
        "someone who talked and is not talking now: Redis keeps their scope's conversation and, only if "
        "they were linked to another channel's identity, their link (with its reverse index). `MEMORY "
        "USAGE` counts a key's value, name and dictionary entry; `used_memory` growth also counts the "
        "key-space tables and expiry entries.",
        "",
        f"Goal: under 300 bytes (MEMORY USAGE) — {_ok(memory_met)}.",
        "",
        "| identities | MEMORY USAGE bytes per identity | `used_memory` growth per identity |",
        "|---|---|---|",
        f"| not linked (conversation only) | {unlinked['memory_usage_per_identity']:.0f} | "
        f"{unlinked['used_memory_per_identity']:.0f} |",
        f"| linked ({by_key}) | {linked['memory_usage_per_identity']:.0f} | "
        f"{linked['used_memory_per_identity']:.0f} |",
        "",
        "What Redis actually kept after the scale run above, per conversation (one message each), by "
        "kind of key (MEMORY USAGE; `journal` is the finished event kept for deduplication, `val` holds "
        "the message→conversation map of feedback buttons and short-lived counters):",
        "",
        "| " + " | ".join(f"`{k}`" for k in left) + " | total |",
        "|" + "---|" * (len(left) + 1),
        "| " + " | ".join(f"{v:.0f}" for v in left.values()) + f" | {sum(left.values()):.0f} |",
        "",
        notes.MEMORY,
        "",
    ])


def instances(r: dict[str, Any], out: Path) -> str:
    figure = _figure("instances", r, out)
    runs = r["runs"]
    one = runs["1"]["throughput"]
    rows = [f"| {n} | {x['throughput']:.0f} | {x['throughput'] / one:.2f}x | {x['ack_ms']['p99']:.1f} | "
            f"{x['end_to_end_ms']['p50']:.0f} | {x['end_to_end_ms']['p99']:.0f} | {x['cpu_ms_per_answer']:.2f} | "
            f"{x['errors']} | {x['delivered']} |" for n, x in sorted(runs.items(), key=lambda i: int(i[0]))]
    rows += [f"| {n} (`serve --workers {n}`, one port) | {x['throughput']:.0f} | {x['throughput'] / one:.2f}x | "
             f"{x['ack_ms']['p99']:.1f} | {x['end_to_end_ms']['p50']:.0f} | {x['end_to_end_ms']['p99']:.0f} | "
             f"{x['cpu_ms_per_answer']:.2f} | {x['errors']} | {x['delivered']} |"
             for n, x in sorted(r.get("workers", {}).items(), key=lambda i: int(i[0]))]
    return "\n".join([
        "## 5. Instances on one Redis",
        "",
        f"1 to {max(int(n) for n in runs)} gateway processes share one Redis; the load generator spreads a "
        f"burst of {r['count']} Slack webhooks over them round-robin (as a load balancer would). "
        "End-to-end is from sending the webhook to the answer's final Slack call, so under a burst it is "
        "mostly queueing. The last rows are one `switchboard serve --workers N` on one port: the kernel "
        "spreads the load generator's connections over its workers (`SO_REUSEPORT`).",
        "",
        "| processes | answers/s (this machine) | vs 1 process | ack p99 ms | end-to-end p50 ms | "
        "end-to-end p99 ms | CPU ms per answer (all processes) | webhook errors | delivered |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        _image("throughput and p99 by number of processes", figure),
        "",
        notes.INSTANCES,
        "",
    ])


def budget(r: dict[str, Any]) -> str:
    runs = r["runs"]
    rows = [f"| {n} | {x['store']} | {x['delivered']} | {x['agent_calls']} | {x['refused']} "
            f"({x['refused_share']:.1%}) | {x['last_answer_s']:.1f} | {x['budget_bound_s']:.1f} | "
            f"{x['ratio']:.2f} |" for n, x in sorted(runs.items(), key=lambda i: int(i[0]))]
    met = all(x["refused_share"] <= 0.03 and x["ratio"] <= 1.15 and x["delivered"] == r["count"]
              for x in runs.values())
    return "\n".join([
        "## 6. A burst against the agent's rate limit",
        "",
        f"{r['count']} people write at once (Slack, a burst of first messages) while the emulator enforces "
        f"{r['limit']} requests per {r['window']:g} s, answering 429 with `Retry-After` beyond it, as Chatbase "
        f"does; the gateways run with `agent.rate_limit = \"{r['limit']}/{r['window']:g}s\"`. One process "
        "keeps the budget in memory (SQLite store); several share it in Redis. With a sliding window the "
        f"last call can start no earlier than {(r['count'] - 1) // r['limit'] * r['window']:g} s after the "
        "first, and its answer then takes one answer's time (the fastest of the run): that is the bound.",
        "",
        f"Goal: every answer delivered, at most 3% of agent calls refused, the last answer within 15% of the "
        f"bound — {_ok(met)}.",
        "",
        "| processes | store | answers | agent calls | refused (429) | last answer s | bound s | ratio |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        notes.BUDGET,
        "",
    ])


def isolation(r: dict[str, Any]) -> str:
    runs = r["runs"]
    rows = [f"| {name} | {x['messages']} | {x['p50_before_s']:.2f} / {x['p95_before_s']:.2f} | "
            f"{x['p50_during_s']:.2f} / {x['p95_during_s']:.2f} | {x['refused_calls']} | "
            f"{x['refused_answered_once']} of {x['refused_messages']} | {x['unanswered']} | {x['apologies']} | "
            f"{x['duplicates']} |" for name, x in runs.items()]
    met = all(x["p95_during_s"] <= x["p95_before_s"] + 2.0 and x["unanswered"] == 0 and x["apologies"] == 0
              and x["duplicates"] == 0 and x["refused_answered_once"] == x["refused_messages"]
              for x in runs.values())
    return "\n".join([
        "## 7. One conversation refused by the platform",
        "",
        f"{r['conversations']} people write at {r['rate']:g} messages per second in all, through a gateway in "
        "the bench process and the fake platform API; after a warm-up the fake answers every call concerning "
        f"one of them with 429 and `Retry-After: {r['retry_after']:g}` for {r['refuse']:g} s (that person keeps "
        "writing meanwhile). Latency is from the webhook to the full answer showing on the platform (read every "
        "0.1 s), for the other conversations.",
        "",
        f"Goal: the others' p95 during the refusal within 2 s of before it; every answer of the refused "
        f"conversation shown exactly once after it, none lost, no apology — {_ok(met)}.",
        "",
        "| platform | messages | others p50 / p95 before, s | during, s | 429s | refused person's answers "
        "shown once | lost | apologies | shown twice |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        notes.ISOLATION,
        "",
    ])


def profiling(profile: dict[str, Any] | None) -> str:
    lines = [notes.PROFILING]
    if profile and "breakdown" in profile:
        lines += [
            "",
            f"Where the gateway process spent its busy time in this run (py-spy, {PROFILED}; "
            f"the collapsed stacks are in [benchmarks/{profile['file']}](benchmarks/{profile['file']})):",
            "",
            "| part of the work | share of busy samples |",
            "|---|---|",
            *[f"| {part} | {share:.0f}% |" for part, share in profile["breakdown"].items()],
        ]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], docs: Path) -> Path:
    """Write docs/benchmarks.md and docs/benchmarks/*.png; return the Markdown file."""
    out = docs / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    sections = [notes.INTRO.format(command=COMMAND), machine(results["machine"], results)]
    if "ack" in results:
        sections.append(ack(results["ack"], out))
    if "overhead" in results:
        sections.append(overhead(results["overhead"], out))
    if "throughput" in results:
        sections.append(throughput(results["throughput"], out))
    if "scale" in results and "memory" in results:
        sections.append(scale(results["scale"], results["memory"], out))
    if "instances" in results:
        sections.append(instances(results["instances"], out))
    if "budget" in results:
        sections.append(budget(results["budget"]))
    if "isolation" in results:
        sections.append(isolation(results["isolation"]))
    sections.append(profiling(results.get("profile")))
    path = docs / "benchmarks.md"
    path.write_text("\n".join(sections).rstrip() + "\n")
    return path
