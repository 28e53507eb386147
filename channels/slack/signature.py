"""Slack request signing (v0): ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{raw body}``."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from gateway.errors import WebhookRejected

#: Slack's replay window: requests older or newer than this are refused.
MAX_SKEW_SECONDS = 5 * 60


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """Raise ``WebhookRejected(401)`` unless the request is signed with ``secret`` and fresh."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not timestamp or not signature:
        raise WebhookRejected(401, "missing Slack signature headers")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise WebhookRejected(401, "malformed Slack request timestamp")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > MAX_SKEW_SECONDS:
        raise WebhookRejected(401, "Slack request timestamp outside the 5-minute window")
    # Compare bytes: compare_digest refuses non-ASCII str, and a header is attacker-controlled.
    expected = expected_signature(secret, timestamp, body).encode("ascii")
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise WebhookRejected(401, "bad Slack signature")
