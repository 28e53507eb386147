"""A stand-in for the gateway core, for unit tests of one channel on its own."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from adapters.stores.memory import MemoryStore
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
