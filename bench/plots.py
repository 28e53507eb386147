"""The PNG figures of docs/benchmarks.md (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"sqlite": "#1f77b4", "redis": "#d62728", "baseline": "#7f7f7f"}


def _cdf(ax: Any, samples_ms: list[float], label: str, color: str) -> None:
    ordered = sorted(samples_ms)
    if not ordered:
        return
    ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
    ax.step(ordered, ys, where="post", label=label, color=color)


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def ack(result: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for system in ("baseline", *result["stores"]):
        label = "baseline (same waves)" if system == "baseline" else f"gateway, {system}"
        _cdf(ax, [s * 1000 for s in result[system]["samples"]], label, COLORS[system])
    ax.axvline(50, color="black", linestyle="--", linewidth=1, label="goal: p99 < 50 ms")
    ax.set_xlabel("webhook response time (ms, this machine)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"Slack webhook ack, {result['wave_size']} events at once, agent {result['agent_latency']:g} s")
    ax.legend()
    return _save(fig, out / "ack_latency.png")


def overhead(result: dict[str, Any], out: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, key, title in ((axes[0], "first_samples", "first token → first Slack call"),
                           (axes[1], "last_samples", "last token → final Slack call")):
        for store in result["stores"]:
            _cdf(ax, [s * 1000 for s in result[store][key]], store, COLORS[store])
        ax.axvline(20, color="black", linestyle="--", linewidth=1, label="goal: p99 < 20 ms")
        ax.set_title(title)
        ax.set_xlabel("ms (this machine)")
    axes[0].set_ylabel("fraction of answers")
    axes[1].legend()
    return _save(fig, out / "overhead.png")


def throughput(result: dict[str, Any], out: Path) -> str:
    systems = result["systems"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels, ratios, colors = [], [], []
    for kind in ("slack", "twilio"):
        for store in result["stores"]:
            labels.append(f"{kind}\n{store}")
            ratios.append(systems[f"{kind}/{store}"]["ratio"] * 100)
            colors.append(COLORS[store])
    ax.bar(labels, ratios, color=colors)
    ax.axhline(100, color=COLORS["baseline"], linewidth=1, label="baseline (same run) = 100%")
    ax.axhline(80, color="black", linestyle="--", linewidth=1, label="goal: 80%")
    for x, ratio in enumerate(ratios):
        ax.text(x, ratio + 1, f"{ratio:.0f}%", ha="center")
    ax.set_ylabel("answers per second, % of baseline")
    ax.set_ylim(0, 110)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("End-to-end throughput relative to the hand-written baseline")
    return _save(fig, out / "throughput.png")


def scale(result: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    series = result["rss_series"]
    ax.plot([t for t, _ in series], [mb for _, mb in series], color=COLORS["redis"])
    ax.axhline(300, color="black", linestyle="--", linewidth=1, label="goal: < 300 MB")
    ax.set_xlabel("seconds since the first webhook")
    ax.set_ylabel("gateway RSS (MB, this machine)")
    ax.set_ylim(0, max(320, max((mb for _, mb in series), default=0) * 1.1))
    ax.set_title(f"{result['streams']} conversations streaming at once")
    ax.legend()
    return _save(fig, out / "scale_rss.png")


def instances(result: dict[str, Any], out: Path) -> str:
    runs = result["runs"]
    ns = sorted(runs, key=int)
    fig, left = plt.subplots(figsize=(7, 3.6))
    right = left.twinx()
    left.plot([int(n) for n in ns], [runs[n]["throughput"] for n in ns], "o-", color=COLORS["redis"],
              label="throughput")
    right.plot([int(n) for n in ns], [runs[n]["ack_ms"]["p99"] for n in ns], "s--", color="#2ca02c",
               label="webhook ack p99")
    workers = result.get("workers", {})
    if workers:
        ws = sorted(workers, key=int)
        left.plot([int(n) for n in ws], [workers[n]["throughput"] for n in ws], "D", color="#d62728",
                  markersize=9, label="serve --workers N (one port)")
    left.set_xticks([int(n) for n in ns])
    left.set_xlabel("gateway processes on one Redis")
    left.set_ylabel("answers per second (this machine)")
    right.set_ylabel("ack p99 (ms)")
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    left.legend(loc="lower left")
    right.legend(loc="lower right")
    left.set_title("Instances sharing one Redis")
    return _save(fig, out / "instances.png")
