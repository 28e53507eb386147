"""Chatbase API v2 failures → :mod:`gateway.errors`, decided in one place.

The API's error envelope is ``{"error": {"code", "message", "details"}}``. The HTTP status of
several codes is undocumented (credits, conversation state), so the class is chosen by ``code``
first, then by a code family prefix, and only then by status (for proxies that answer HTML).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from gateway.errors import (
    AgentAuthError,
    AgentError,
    AgentNotFound,
    AgentRateLimited,
    AgentUnavailable,
    BadAgentRequest,
    ConversationEnded,
    CreditsExhausted,
    StreamBroken,
)

#: When the API sends no usable Retry-After with a 429, wait this long.
DEFAULT_RETRY_AFTER = 1.0

CODE_CLASSES: dict[str, type[AgentError]] = {
    "VALIDATION_INVALID_BODY": BadAgentRequest,
    "VALIDATION_INVALID_JSON": BadAgentRequest,
    "CHAT_RETRY_NO_USER_MESSAGE": BadAgentRequest,
    "RESOURCE_MESSAGE_NOT_ASSISTANT": BadAgentRequest,
    "AUTH_MISSING_API_KEY": AgentAuthError,
    "AUTH_INVALID_API_KEY": AgentAuthError,
    "AUTH_EXPIRED_API_KEY": AgentAuthError,
    "AUTH_INSUFFICIENT_PERMISSIONS": AgentAuthError,
    "SUBSCRIPTION_PLAN_REQUIRED": AgentAuthError,
    "SUBSCRIPTION_API_RESTRICTED_PLAN": AgentAuthError,
    "CHAT_MODEL_NOT_ALLOWED": AgentAuthError,
    "CHAT_CREDITS_EXHAUSTED": CreditsExhausted,
    "CHAT_AGENT_CREDITS_EXHAUSTED": CreditsExhausted,
    "AGENT_NOT_FOUND": AgentNotFound,
    "RESOURCE_NOT_FOUND": AgentNotFound,
    "RESOURCE_MESSAGE_NOT_FOUND": AgentNotFound,
    "RESOURCE_TOOL_CALL_NOT_FOUND": AgentNotFound,
    "CHAT_RETRY_MESSAGE_NOT_FOUND": AgentNotFound,
    # The stored conversation belongs to another agent (e.g. the agent id changed): from this
    # agent's point of view it does not exist, and the cure is the same: start a new one.
    "CHAT_CONVERSATION_MISMATCH": AgentNotFound,
    "CHAT_CONVERSATION_NOT_ONGOING": ConversationEnded,
    "RATE_LIMIT_TOO_MANY_REQUESTS": AgentRateLimited,
    "INTERNAL_SERVER_ERROR": AgentUnavailable,
    "CHAT_STREAMING_ERROR": StreamBroken,
}

# Codes the table does not know yet, by family.
_PREFIXES: tuple[tuple[str, type[AgentError]], ...] = (
    ("AUTH_", AgentAuthError),
    ("SUBSCRIPTION_", AgentAuthError),
    ("VALIDATION_", BadAgentRequest),
    ("RATE_LIMIT", AgentRateLimited),
)


def error_class(code: str | None, status: int) -> type[AgentError]:
    """The exception class for an API error ``code`` (preferred) or HTTP ``status``."""
    if code:
        if code in CODE_CLASSES:
            return CODE_CLASSES[code]
        for prefix, cls in _PREFIXES:
            if code.startswith(prefix):
                return cls
        if "CREDITS" in code:
            return CreditsExhausted
        if code.endswith("_NOT_FOUND"):
            return AgentNotFound
        if "NOT_ONGOING" in code:
            return ConversationEnded
    if status == 429:
        return AgentRateLimited
    if status in (401, 403):
        return AgentAuthError
    if status == 402:
        return CreditsExhausted
    if status == 404:
        return AgentNotFound
    if status >= 500 or status in (408, 425):
        return AgentUnavailable
    return BadAgentRequest


def parse_envelope(body: bytes) -> tuple[str | None, str | None, Any]:
    """``(code, message, details)`` from an error body; Nones when it is not the envelope."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None, None, None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        message = err.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
            err.get("details"),
        )
    if isinstance(err, str):  # some gateways answer {"error": "text"}
        return None, err, None
    return None, None, None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float:
    """Seconds to wait after a 429: ``Retry-After`` (seconds or HTTP date), else the reset time."""
    now = time.time() if now is None else now
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            # Milliseconds since the epoch, as Chatbase documents it.
            return max(0.0, float(reset) / 1000.0 - now)
        except ValueError:
            pass
    return DEFAULT_RETRY_AFTER


def error_from_response(status: int, body: bytes, headers: Mapping[str, str], *, what: str = "request") -> AgentError:
    """Build the exception for a failed HTTP response (status ≥ 400). Never raises."""
    code, message, details = parse_envelope(body)
    request_id = headers.get("x-request-id")
    cls = error_class(code, status)
    text = f"Chatbase {what} failed: HTTP {status}"
    if code:
        text += f" {code}"
    if message:
        text += f": {message}"
    if request_id:
        text += f" (request {request_id})"
    common: dict[str, Any] = {"code": code, "status": status, "request_id": request_id, "details": details}
    if cls is AgentRateLimited:
        return AgentRateLimited(text, retry_after=retry_after_seconds(headers), **common)
    return cls(text, **common)
