"""What the web chat endpoint checks before it runs a turn: origin, body, rate and concurrency.

The web chat API is reachable by anyone on the internet, without a platform signature, so these
checks are its only line of defence. Each failure is a :class:`ChatRequestError` that the channel
answers as JSON with the carried status (400, 403, 413, 429), never a 500.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from channels.web.visitor import Claim

#: what a sessionId may be: long enough to be unguessable, short and plain enough to be a key
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
#: an agent message id as the page got it in ``finish``; only ever sent back to the agent
MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
FEEDBACK = ("positive", "negative", None)  # a tuple: `in` must not hash client JSON
_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:\d{1,5})?")


class ChatRequestError(Exception):
    """A refused chat request: HTTP ``status``, a stable ``code`` and a human ``message``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A valid chat request."""

    session_id: str
    text: str
    claim: Claim | None = None


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    """Thumbs up/down (or cleared, ``None``) on one answer of a session."""

    session_id: str
    message_id: str
    feedback: str | None
    claim: Claim | None = None


def normalise_origin(value: str) -> str:
    """``scheme://host[:port]`` in lower case, or ``*``; ValueError for anything else."""
    value = value.strip()
    if value == "*":
        return value
    lowered = value.lower().rstrip("/")
    if not _ORIGIN.fullmatch(lowered):
        raise ValueError(f"not an origin {value!r}: use scheme://host[:port] or \"*\"")
    return lowered


def origin_of(url: str) -> str:
    """The origin (``scheme://host[:port]``) of a URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class OriginPolicy:
    """Which browser origins may call the chat API.

    The page's own origin is always allowed: the gateway's ``public_url`` and the origin the
    request itself was addressed to (a browser sets ``Origin`` and ``Host`` truthfully, so a
    page on another site cannot make them agree). Others only when listed, or with ``"*"``.
    """

    def __init__(self, allowed: Sequence[str], public_url: str) -> None:
        self.any = "*" in allowed
        self.listed = frozenset(o for o in allowed if o != "*")
        self.public = origin_of(public_url)

    def allows(self, origin: str | None, own_origin: str) -> bool:
        if origin is None:
            # Not a browser cross-origin request (curl, server-side AI SDK): nothing to protect.
            return True
        origin = origin.lower()
        return self.any or origin in (self.public, own_origin.lower()) or origin in self.listed

    def cors_headers(self, origin: str | None, own_origin: str) -> dict[str, str]:
        """CORS response headers for an allowed cross-origin caller; none for same origin."""
        if origin is None or origin.lower() in (self.public, own_origin.lower()):
            return {}
        if origin.lower() in self.listed:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if self.any:
            return {"Access-Control-Allow-Origin": "*"}
        return {}


def _object_with_session(body: bytes) -> tuple[dict[str, object], str]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ChatRequestError(400, "malformed_json", "The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise ChatRequestError(400, "malformed_json", "The body must be a JSON object.")
    session_id = data.get("sessionId")
    if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
        raise ChatRequestError(
            400, "invalid_session_id", "sessionId must be 8 to 64 characters of A-Z, a-z, 0-9, '_' or '-'."
        )
    return data, session_id


def claim_of(user_id: object, user_hash: object) -> Claim | None:
    """A signed-identity claim, if any. A malformed one is still a claim (that fails its check):
    the visitor gets an anonymous answer saying so, never an error."""
    if user_id is None or user_id == "":
        return None
    return Claim(user_id if isinstance(user_id, str) else "", user_hash if isinstance(user_hash, str) else "")


def parse_chat_body(body: bytes, max_chars: int) -> ChatMessage:
    """Validate ``{"sessionId": str, "message": str}``; raise :class:`ChatRequestError`."""
    data, session_id = _object_with_session(body)
    message = data.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ChatRequestError(400, "invalid_message", "message must be a non-empty string.")
    if len(message) > max_chars:
        raise ChatRequestError(413, "message_too_long", f"message is longer than {max_chars} characters.")
    return ChatMessage(session_id, message.strip(), claim_of(data.get("userId"), data.get("userHash")))


def parse_feedback_body(body: bytes) -> FeedbackRequest:
    """Validate ``{"sessionId", "messageId", "feedback": "positive" | "negative" | null}``."""
    data, session_id = _object_with_session(body)
    message_id = data.get("messageId")
    if not isinstance(message_id, str) or not MESSAGE_ID.fullmatch(message_id):
        raise ChatRequestError(400, "invalid_message_id", "messageId must be the id of an answer.")
    feedback = data.get("feedback", "missing")
    if feedback not in FEEDBACK:
        raise ChatRequestError(400, "invalid_feedback", 'feedback must be "positive", "negative" or null.')
    return FeedbackRequest(session_id, message_id, feedback if isinstance(feedback, str) else None,
                           claim_of(data.get("userId"), data.get("userHash")))


def parse_session_body(body: bytes) -> tuple[str, Claim | None]:
    """Validate ``{"sessionId", "userId"?, "userHash"?}`` (starting a new conversation)."""
    data, session_id = _object_with_session(body)
    return session_id, claim_of(data.get("userId"), data.get("userHash"))


#: a Chatbase page cursor as the history endpoint hands it out and takes it back
CURSOR = re.compile(r"[A-Za-z0-9._~+/=:-]{1,512}")


def parse_history_query(query: Mapping[str, str]) -> tuple[str, str | None, int]:
    """``sessionId``, ``cursor`` (optional) and ``limit`` (1-50, default 20) of a history request."""
    session_id = query.get("sessionId", "")
    if not SESSION_ID.fullmatch(session_id):
        raise ChatRequestError(
            400, "invalid_session_id", "sessionId must be 8 to 64 characters of A-Z, a-z, 0-9, '_' or '-'."
        )
    cursor = query.get("cursor") or None
    if cursor is not None and not CURSOR.fullmatch(cursor):
        raise ChatRequestError(400, "invalid_cursor", "cursor must be one handed out by this endpoint.")
    raw_limit = query.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 50:
        raise ChatRequestError(400, "invalid_limit", "limit must be a whole number from 1 to 50.")
    return session_id, cursor, int(raw_limit)


def body_limit(max_chars: int) -> int:
    """Bytes a valid request can need: every character JSON-escaped (6 bytes) plus the envelope."""
    return max_chars * 6 + 2048


class RateLimiter:
    """A token bucket per session: ``per_minute`` messages, bursting up to the same number.

    Buckets of idle sessions are forgotten (least recently used first) once there are more
    than ``max_sessions``, so a flood of invented session ids cannot grow memory without bound.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = max(per_minute, 1.0)
        self.rate = per_minute / 60.0
        self.max_sessions = max_sessions
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket; raise a 429 telling when the next one is due."""
        now = self.clock()
        tokens, stamp = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise ChatRequestError(
                429, "rate_limited", f"Too many messages; try again in {wait} s.", {"Retry-After": str(wait)}
            )
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > self.max_sessions:
            self._buckets.popitem(last=False)


class ClientSlots:
    """At most ``limit`` chat requests in flight per client address."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: dict[str, int] = {}

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        if self._busy.get(client, 0) >= self.limit:
            raise ChatRequestError(
                429, "too_many_requests", "Too many answers in progress; wait for one to finish.",
                {"Retry-After": "1"},
            )
        self._busy[client] = self._busy.get(client, 0) + 1
        try:
            yield
        finally:
            left = self._busy[client] - 1
            if left:
                self._busy[client] = left
            else:
                del self._busy[client]
