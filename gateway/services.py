"""The app's resources, each under its own typed ``AppKey``, and the channels' view of them.

Every resource is opened by its own cleanup context in :mod:`gateway.app` and stored under its
key there. Channels are built before any of them is open (so ``switchboard check`` can build
channels without starting anything); :class:`AppServices` reads the keys on use, so what it
returns is valid once the app has started, and asking earlier is a clear error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from aiohttp import ClientSession, web

from gateway.agent import AgentClient, Page
from gateway.config import Settings
from gateway.errors import AgentNotFound
from gateway.events import InboundEvent
from gateway.media_links import MediaLinks
from gateway.metrics import Metrics
from gateway.store import Store

if TYPE_CHECKING:
    from gateway.agents import Agents
    from gateway.channel import Answer, Channel, Reply
    from gateway.commands import Controls
    from gateway.dispatch import Dispatcher

T = TypeVar("T")

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
HTTP = web.AppKey("http", ClientSession)
STORE: web.AppKey[Store] = web.AppKey("store")
#: the default agent's client (``[agent]``); AGENTS has every agent and which channel uses which
AGENT: web.AppKey[AgentClient] = web.AppKey("agent")
AGENTS: web.AppKey[Agents] = web.AppKey("agents")
CHANNELS: web.AppKey[Mapping[str, Channel]] = web.AppKey("channels")
CONTROLS: web.AppKey[Controls] = web.AppKey("controls")
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
MEDIA = web.AppKey("media", MediaLinks)


class NotStarted(RuntimeError):
    """A resource was asked for before the app's cleanup contexts opened it."""


def resource(app: web.Application, key: web.AppKey[T], what: str) -> T:
    """``app[key]``, or :class:`NotStarted` naming the resource."""
    try:
        return app[key]
    except KeyError:
        raise NotStarted(f"the {what} is not open: the app has not started (or has stopped)") from None


class AppServices:
    """:class:`gateway.channel.Services` for the channels of one app."""

    def __init__(self, app: web.Application, settings: Settings, metrics: Metrics) -> None:
        self._app = app
        self._settings = settings
        self._metrics = metrics

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    @property
    def store(self) -> Store:
        return resource(self._app, STORE, "store")

    @property
    def http(self) -> ClientSession:
        return resource(self._app, HTTP, "HTTP session")

    @property
    def media(self) -> MediaLinks:
        return resource(self._app, MEDIA, "media link signer")

    async def accept(self, events: Sequence[InboundEvent]) -> list[bool]:
        return await resource(self._app, DISPATCHER, "dispatcher").accept(events)

    async def run_turn(self, event: InboundEvent, reply: Reply) -> Answer | None:
        return await resource(self._app, DISPATCHER, "dispatcher").run_now(event, reply)

    async def conversation_messages(self, conversation_key: str, *, cursor: str | None = None,
                                    limit: int = 20) -> Page:
        return await current_messages(
            resource(self._app, STORE, "store"),
            resource(self._app, AGENTS, "agent").for_conversation(conversation_key), conversation_key,
            self._settings.gateway.conversation_ttl, cursor, limit,
        )


class OfflineServices:
    """:class:`gateway.channel.Services` outside a running gateway (``switchboard check``, plugin
    commands): settings, metrics and, if given, an HTTP session; no store and no turns."""

    def __init__(self, settings: Settings, *, http: ClientSession | None = None) -> None:
        self._settings = settings
        self._metrics = Metrics()
        self._http = http

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    @property
    def store(self) -> Store:
        raise NotStarted("no store outside a running gateway")

    @property
    def http(self) -> ClientSession:
        if self._http is None:
            raise NotStarted("no HTTP session was given")
        return self._http

    @property
    def media(self) -> MediaLinks:
        raise NotStarted("no media links outside a running gateway (their key is in the store)")

    async def accept(self, events: Sequence[InboundEvent]) -> list[bool]:
        raise NotStarted("events cannot be accepted outside a running gateway")

    async def run_turn(self, event: InboundEvent, reply: Reply) -> Answer | None:
        raise NotStarted("turns cannot run outside a running gateway")

    async def conversation_messages(self, conversation_key: str, *, cursor: str | None = None,
                                    limit: int = 20) -> Page:
        raise NotStarted("no conversations outside a running gateway")


#: what :func:`current_messages` answers when there is nothing to show
NO_MESSAGES = Page(items=[], cursor=None, has_more=False, total=0)


async def current_messages(
    store: Store, agent: AgentClient, conversation_key: str, conversation_ttl: float, cursor: str | None, limit: int
) -> Page:
    """One page of the conversation a scope is in now, as the next turn would see it: none yet,
    one idle longer than ``conversation_ttl`` (the next message starts afresh) or one the agent no
    longer has are all empty. The gateway keeps no transcripts; the agent's list is the record."""
    state = await store.get_conversation(conversation_key)
    if state is None or not state.conversation_id or time.time() - state.updated_at > conversation_ttl:
        return NO_MESSAGES
    try:
        return await agent.list_messages(state.conversation_id, cursor=cursor, limit=limit)
    except AgentNotFound:
        return NO_MESSAGES
