"""The emulator's response shapes: ``{"data": ...}`` on success, the error envelope on failure,
and request-body validation that reports field errors in ``details`` like the real API."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

#: Chatbase userId rule: at most 128 characters of [a-zA-Z0-9._-].
USER_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class ApiError(Exception):
    """An API failure, rendered as ``{"error": {"code", "message", "details"?}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The HTTP response for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return web.json_response({"error": error}, status=self.status, headers=self.headers)


def invalid(details: dict[str, str]) -> ApiError:
    """400 ``VALIDATION_INVALID_BODY`` with per-field messages."""
    return ApiError(400, "VALIDATION_INVALID_BODY", "Invalid request body", details=details)


def data(payload: Any, status: int = 200) -> web.Response:
    """A successful non-list response."""
    return web.json_response({"data": payload}, status=status)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or the API's validation errors."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        raise ApiError(400, "VALIDATION_INVALID_JSON", "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid({"body": "Expected a JSON object"})
    return body


class Fields:
    """Collects field errors so one response reports all of them, as the real API does."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.errors: dict[str, str] = {}

    def string(self, name: str, *, required: bool = False, pattern: re.Pattern[str] | None = None) -> str | None:
        """A non-empty string field (``None`` when absent and optional)."""
        value = self.body.get(name)
        if value is None:
            if required:
                self.errors[name] = "Required"
            return None
        if not isinstance(value, str) or not value:
            self.errors[name] = "Expected a non-empty string"
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.errors[name] = "At most 128 characters of letters, digits, '.', '_' or '-'"
            return None
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """A boolean field with a default."""
        value = self.body.get(name, default)
        if not isinstance(value, bool):
            self.errors[name] = "Expected a boolean"
            return default
        return value

    def check(self) -> None:
        """Raise the collected errors, if any."""
        if self.errors:
            raise invalid(self.errors)


def page_query(request: web.Request) -> tuple[str | None, int]:
    """``cursor`` and ``limit`` (1-100, default 20) from the query string."""
    raw = request.query.get("limit")
    limit = 20
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise invalid({"limit": "Expected an integer from 1 to 100"})
    return request.query.get("cursor") or None, limit


def paginated(items: list[dict[str, Any]], cursor: str | None, has_more: bool, total: int) -> web.Response:
    """A list response with its pagination block."""
    return web.json_response({"data": items, "pagination": {"cursor": cursor, "hasMore": has_more, "total": total}})
