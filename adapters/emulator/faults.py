"""Things that go wrong on purpose: injected failures, cut streams, latency, rate limiting."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

CutMode = Literal["clean", "abort"]

#: The stream shapes the documentation shows (see chatbase-api-v2.md, "Streaming responses"):
#:
#: ``newer``                 ``start``, ``text-start``/``text-delta {id}``/``text-end``, tool-input
#:                           events, ``finish {messageMetadata}`` (the default)
#: ``legacy``                ``start``, id-less ``text-delta``, ``tool-input-available``, ``finish {metadata}``
#: ``message-start``         ``newer`` opening with ``message-start`` instead of ``start``
#: ``steps``                 ``newer`` with ``start-step``/``finish-step`` around the content
#: ``metadata-event``        a ``message-metadata {messageMetadata}`` event, then ``finish`` without metadata
#: ``metadata-flat``         the flattened ``message-metadata`` (fields on the event), then a bare ``finish``
#: ``metadata-after-finish`` a bare ``finish``, then ``message-metadata {messageMetadata}``, then ``[DONE]``
#: ``flat-after-finish``     ``finish`` with only the messageId, the rest in a flattened event after it
#: ``error``                 half of the text, then ``error {errorText}`` and nothing more (the stored
#:                           answer is left incomplete)
SHAPES = (
    "newer", "legacy", "message-start", "steps", "metadata-event", "metadata-flat",
    "metadata-after-finish", "flat-after-finish", "error",
)

_DEFAULT_CODES = {
    400: "VALIDATION_INVALID_BODY",
    401: "AUTH_INVALID_API_KEY",
    402: "CHAT_CREDITS_EXHAUSTED",
    403: "AUTH_INSUFFICIENT_PERMISSIONS",
    404: "RESOURCE_NOT_FOUND",
    409: "CHAT_CONVERSATION_MISMATCH",
    429: "RATE_LIMIT_TOO_MANY_REQUESTS",
}


@dataclass(frozen=True, slots=True)
class Failure:
    """One injected error response."""

    status: int
    code: str
    retry_after: float | None = None


class Faults:
    """Mutable fault settings of an emulator; also settable over ``POST /_emulator/faults``.

    ``latency`` delays the first byte of every API response; ``token_delay`` spaces the text
    deltas of a stream; ``drip`` (seconds per byte) sends streamed answers one byte at a time,
    read afresh for every byte, so a stream started during a drip speeds up when it ends (a
    congested link, not a timeout: bytes keep coming). Queued failures and cuts are consumed by
    the next API requests.
    """

    def __init__(
        self, latency: float = 0.0, token_delay: float = 0.0, drip: float = 0.0, stream_shape: str = "newer"
    ) -> None:
        self.latency = latency
        self.token_delay = token_delay
        self.drip = drip
        #: how answers are streamed: one of :data:`adapters.emulator.streaming.SHAPES`
        self.stream_shape = stream_shape
        self._failures: deque[Failure] = deque()
        self._cuts: deque[CutMode] = deque()

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None, code: str | None = None) -> None:
        """Answer the next ``count`` API requests (health included) with ``status`` and ``code``.

        ``code`` defaults to the documented code for the status; ``retry_after`` (seconds) is
        sent as ``Retry-After``.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if count < 1:
            raise ValueError("count must be at least 1")
        if code is None:
            code = _DEFAULT_CODES.get(status, "INTERNAL_SERVER_ERROR" if status >= 500 else "VALIDATION_INVALID_BODY")
        self._failures.extend([Failure(status, code, retry_after)] * count)

    def cut_next_stream(self, count: int = 1, *, abort: bool = False) -> None:
        """Stop the next ``count`` streamed answers after some text, without finish or [DONE].

        By default the response ends cleanly; ``abort=True`` drops the connection instead.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        self._cuts.extend(["abort" if abort else "clean"] * count)

    def take_failure(self) -> Failure | None:
        return self._failures.popleft() if self._failures else None

    def take_cut(self) -> CutMode | None:
        return self._cuts.popleft() if self._cuts else None

    def clear(
        self, latency: float = 0.0, token_delay: float = 0.0, drip: float = 0.0, stream_shape: str = "newer"
    ) -> None:
        """Forget queued faults and set the delays and the stream shape."""
        self._failures.clear()
        self._cuts.clear()
        self.stream_shape = stream_shape
        self.latency = latency
        self.token_delay = token_delay
        self.drip = drip

    def snapshot(self) -> dict[str, Any]:
        """The current settings as JSON."""
        return {
            "latency": self.latency,
            "token_delay": self.token_delay,
            "drip": self.drip,
            "stream_shape": self.stream_shape,
            "pending_failures": [
                {"status": f.status, "code": f.code, "retry_after": f.retry_after} for f in self._failures
            ],
            "pending_cuts": list(self._cuts),
        }

    def apply(self, doc: Any) -> None:
        """Apply a control document: ``{"fail_next": {status, count, retry_after, code} | status,
        "cut_next_stream": count | {count, abort}, "latency": s, "token_delay": s, "drip": s,
        "stream_shape": name}``; a flat
        ``{"status", "count", "retry_after", "code"}`` also means ``fail_next``.

        Raises ValueError (or TypeError) on a malformed document, before changing anything.
        """
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        fail = doc.get("fail_next")
        if fail is None and "status" in doc:
            fail = {k: doc[k] for k in ("status", "count", "retry_after", "code") if k in doc}
        if isinstance(fail, int) and not isinstance(fail, bool):
            fail = {"status": fail}
        cut = doc.get("cut_next_stream")
        if isinstance(cut, int) and not isinstance(cut, bool):
            cut = {"count": cut}
        delays = {k: doc[k] for k in ("latency", "token_delay", "drip") if k in doc}
        # Validate everything before changing anything.
        for name, value in delays.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")
        shape = doc.get("stream_shape")
        if shape is not None and shape not in SHAPES:
            raise ValueError(f"stream_shape must be one of {', '.join(SHAPES)}")
        staged = Faults()
        if fail is not None:
            if not isinstance(fail, dict) or not isinstance(fail.get("status"), int):
                raise ValueError("fail_next needs an integer status")
            code = fail.get("code")
            staged.fail_next(
                fail["status"],
                int(fail.get("count", 1)),
                _opt_float(fail.get("retry_after")),
                code if isinstance(code, str) else None,
            )
        if cut is not None:
            if not isinstance(cut, dict):
                raise ValueError("cut_next_stream must be a count or an object")
            staged.cut_next_stream(int(cut.get("count", 1)), abort=bool(cut.get("abort", False)))
        self._failures.extend(staged._failures)
        self._cuts.extend(staged._cuts)
        for name, value in delays.items():
            setattr(self, name, float(value))
        if shape is not None:
            self.stream_shape = shape


@dataclass(frozen=True, slots=True)
class RateInfo:
    """What the rate-limit headers say about one request; ``retry_after`` set when refused."""

    limit: int
    remaining: int
    reset_ms: int
    retry_after: int | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_ms),
        }
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    """Sliding-window limit per API key and client IP (100 per 10 s in the real API).

    When not ``enforced`` it still counts, so every response carries truthful headers.
    """

    def __init__(self, limit: int = 100, window: float = 10.0, *, enforced: bool = False) -> None:
        self.limit = limit
        self.window = window
        self.enforced = enforced
        self._hits: dict[str, deque[float]] = {}
        #: requests refused with 429 since the last reset
        self.refused = 0

    def counted(self) -> dict[str, int]:
        """Requests in the current window by API key (tests check which key a call used)."""
        now = time.monotonic()
        counts: dict[str, int] = {}
        for key, hits in self._hits.items():
            token = key.rpartition("|")[0]
            counts[token] = counts.get(token, 0) + sum(1 for t in hits if t > now - self.window)
        return counts

    def hit(self, key: str) -> RateInfo:
        """Count one request for ``key``; refused ones are not counted."""
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        refused = self.enforced and len(hits) >= self.limit
        if refused:
            self.refused += 1
        else:
            hits.append(now)
        # The window frees its first slot when its oldest request leaves it.
        frees_in = hits[0] + self.window - now
        reset_ms = int((time.time() + frees_in) * 1000)
        retry_after = max(1, math.ceil(frees_in)) if refused else None
        return RateInfo(self.limit, max(0, self.limit - len(hits)), reset_ms, retry_after)

    def reset(self) -> None:
        self._hits.clear()
        self.refused = 0

    def apply(self, doc: Any) -> None:
        """``true``/``false`` (enforce or not), or ``{"enforced", "max", "window"}``; ValueError when malformed."""
        if isinstance(doc, bool):
            doc = {"enforced": doc}
        if not isinstance(doc, dict):
            raise ValueError("rate_limit must be true, false or {enforced, max, window}")
        limit, window = doc.get("max", self.limit), doc.get("window", self.window)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError("rate_limit.max must be a positive integer")
        if not isinstance(window, int | float) or isinstance(window, bool) or window <= 0:
            raise ValueError("rate_limit.window must be a positive number of seconds")
        self.enforced = bool(doc.get("enforced", self.enforced))
        self.limit, self.window = limit, float(window)

    def snapshot(self) -> dict[str, Any]:
        return {"enforced": self.enforced, "max": self.limit, "window": self.window, "refused": self.refused}


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
