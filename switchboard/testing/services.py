"""A stand-in for the gateway core, for unit tests of one channel on its own."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from adapters.stores.memory import MemoryStore
from gateway.channel import InboundRequest
from gateway.config import parse_settings
from gateway.events import InboundEvent
from gateway.media_links import MediaLinks
from gateway.metrics import Metrics


class StubServices:
    """Just enough of ``gateway.channel.Services`` to parse webhooks and send: a memory store,
    default settings, and an ``accept`` that takes every event and records it in ``accepted``."""

    def __init__(self, http: aiohttp.ClientSession, store: MemoryStore | None = None) -> None:
        self.settings = parse_settings({}, env={})
        self.store = store if store is not None else MemoryStore()
        self.http = http
        self.metrics = Metrics()
        self.media = MediaLinks(b"stub media link key 0123456789", "https://gateway.test", 3600)
        self.accepted: list[InboundEvent] = []

    async def accept(self, events: Sequence[InboundEvent]) -> list[bool]:
        self.accepted.extend(events)
        return [True] * len(events)


def inbound_request(
    body: bytes | str | Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "POST",
    path: str = "/webhooks/test",
    query: Mapping[str, str] | None = None,
    public_url: str | None = None,
) -> InboundRequest:
    """A webhook request as the core hands it to ``verify`` and ``parse`` (a mapping is sent as JSON)."""
    raw = json.dumps(body).encode() if isinstance(body, Mapping) else body.encode() if isinstance(body, str) else body
    return InboundRequest(
        method,
        path,
        dict(query or {}),
        CIMultiDictProxy(CIMultiDict(headers or {})),
        raw,
        public_url or f"https://gateway.example{path}",
    )
