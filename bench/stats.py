"""Percentiles and the joins between what the load generator sent and what the fakes received."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest-rank: p99 of 200 samples is the 2nd largest."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(len(values), percentile(values, 50), percentile(values, 90), percentile(values, 99),
                   max(values, default=math.nan))

    def ms(self) -> dict[str, float]:
        return {"p50": self.p50 * 1000, "p90": self.p90 * 1000, "p99": self.p99 * 1000, "max": self.max * 1000}


def errors(results: list[list[Any]], ok: int = 200) -> int:
    """Requests that did not get ``ok`` (including transport errors)."""
    return sum(1 for r in results if r[3] != ok)


def completions(calls: dict[str, list[list[Any]]]) -> dict[str, float]:
    """Per conversation: when its last API call arrived, for conversations whose answer completed."""
    return {key: max(c[0] for c in cs) for key, cs in calls.items() if any(c[2] for c in cs)}


def throughput(sent: list[list[Any]], done: dict[str, float]) -> float:
    """Answers delivered per second, from the first webhook sent to the last answer delivered."""
    if not sent or not done:
        return 0.0
    return len(done) / (max(done.values()) - min(r[1] for r in sent))


def end_to_end(sent: list[list[Any]], done: dict[str, float], key_of: Any) -> list[float]:
    """Seconds from each webhook being sent to its answer's last API call."""
    return [done[key_of(r[0])] - r[1] for r in sent if key_of(r[0]) in done]
