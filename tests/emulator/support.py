"""Raw-HTTP helpers for the emulator tests, as any Chatbase v2 client would speak to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

AUTH = {"Authorization": "Bearer any-key"}
ROOT = Path(__file__).resolve().parents[2]


class Api:
    """Tiny raw HTTP helper: returns (status, headers, parsed body or SSE events)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.root = base.removesuffix("/api/v2")

    async def call(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any, Any]:
        url = path if path.startswith("http") else self.base + path
        hdrs = AUTH if headers is None else headers
        async with self.session.request(method, url, json=body, headers=hdrs, **kw) as resp:
            raw = await resp.read()
            if resp.content_type == "text/event-stream":
                return resp.status, resp.headers, sse(raw)
            return resp.status, resp.headers, json.loads(raw) if raw else None

    async def chat(self, agent: str = "a1", **body: Any) -> tuple[int, Any, Any]:
        return await self.call("POST", f"/agents/{agent}/chat", body)

    async def chat_json(self, agent: str = "a1", **body: Any) -> dict[str, Any]:
        status, _, doc = await self.chat(agent, stream=False, **body)
        assert status == 200, doc
        return dict(doc["data"])


def sse(raw: bytes) -> list[Any]:
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            payload = block[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def streamed_text(events: list[Any]) -> str:
    return "".join(e["delta"] for e in events if isinstance(e, dict) and e["type"] == "text-delta")


def error_of(doc: Any) -> tuple[str, dict[str, str] | None]:
    assert set(doc) == {"error"} and {"code", "message"} <= set(doc["error"]) and doc["error"]["message"]
    return doc["error"]["code"], doc["error"].get("details")


