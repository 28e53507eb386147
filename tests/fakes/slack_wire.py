"""How the fake Slack Web API (:mod:`tests.fakes.slack`) reads a request the way Slack does:
parameters as JSON, form or query, the token from its header, required arguments, message text and
blocks within Slack's limits, and message ``metadata``; a :class:`Refusal` is Slack's ``ok: false``."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

from aiohttp import web

CLIENT_ID = "1111.2222"
CLIENT_SECRET = "oauth-client-secret"
MAX_TEXT = 40_000


class Refusal(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def required(p: dict[str, Any], key: str) -> str:
    value = p.get(key)
    if not value:
        raise Refusal(f"invalid_arguments: missing {key}" if key != "channel" else "channel_not_found")
    return str(value)


def read_metadata(raw: Any) -> dict[str, Any] | None:
    """``metadata`` as chat.postMessage takes it: an object (or its JSON) with event_type and event_payload."""
    if raw in (None, ""):
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict) or not isinstance(value.get("event_type"), str) \
            or not isinstance(value.get("event_payload"), dict):
        raise Refusal("invalid_metadata_format")
    return {"event_type": value["event_type"], "event_payload": value["event_payload"]}


def flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def content(p: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    text = str(p.get("text") or "")
    blocks = p.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if not text and not blocks:
        raise Refusal("no_text")
    if len(text) > MAX_TEXT:
        raise Refusal("msg_too_long")
    for block in blocks:
        section = block.get("text") if block.get("type") == "section" else None
        if section and len(section.get("text", "")) > 3000:
            raise Refusal("invalid_blocks")
    if len(blocks) > 50:
        raise Refusal("invalid_blocks")
    return text, blocks


def token_of(request: web.Request, params: dict[str, Any]) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        return "basic" if (user, password) == (CLIENT_ID, CLIENT_SECRET) else ""
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else str(params.get("token") or "")


async def read_params(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query)
    raw = await request.read()
    if request.content_type == "application/json":
        return dict(json.loads(raw or b"{}"))
    return dict(urllib.parse.parse_qsl(raw.decode()))
