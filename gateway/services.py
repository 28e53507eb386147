"""The object every channel receives: the shared resources and the two ways to hand in work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiohttp import ClientSession

from gateway.channel import Answer, Reply
from gateway.config import Settings
from gateway.events import InboundEvent
from gateway.metrics import Metrics

if TYPE_CHECKING:
    from gateway.agent import AgentClient
    from gateway.channel import Channel
    from gateway.dispatch import Dispatcher
    from gateway.media_links import MediaLinks
    from gateway.store import Store


class GatewayServices:
    """Filled in by the app's cleanup contexts as each resource starts (see ``gateway.app``)."""

    store: Store
    agent: AgentClient
    http: ClientSession
    dispatcher: Dispatcher
    media: MediaLinks

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.channels: dict[str, Channel] = {}

    async def accept(self, events: Sequence[InboundEvent]) -> list[bool]:
        return await self.dispatcher.accept(events)

    async def run_turn(self, event: InboundEvent, reply: Reply) -> Answer | None:
        return await self.dispatcher.run_now(event, reply)
