"""The channel adapter contract: every built-in and third-party channel subclasses :class:`Channel`.

A channel turns platform webhooks into :class:`InboundEvent`s and delivers answers back. The core
owns the webhook route (size limit, signature check before parsing, journal before ack, status
codes) so a channel only writes the platform-specific parts:

* ``Settings``: a pydantic model of its config keys (unknown keys are errors);
* ``verify(request)``: check the signature on the raw body, raise ``WebhookRejected``;
* ``parse(request)``: return the platform's reply and the events to process;
* ``send_text(event, text)``: send one finished, rendered part (buffered channels), or
  ``open_reply`` to stream a growing answer (Slack, Telegram, web);
* ``render(markdown)``: the agent's Markdown in the channel's markup; ``max_text_length``.

Channels that poll (email, Telegram long-polling, Slack Socket Mode) override ``run``.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

import pydantic
from aiohttp import ClientSession, web
from multidict import CIMultiDictProxy

from gateway.errors import ChannelError, ConfigError, StoreUnavailable, WebhookRejected
from gateway.events import Identity, InboundEvent
from gateway.pacing import Pacer
from gateway.progress import Progress as Progress  # re-exported: channels import it from here
from gateway.text import split_text

if TYPE_CHECKING:
    from gateway.agent import Page
    from gateway.config import Settings
    from gateway.desk import SupportDesk
    from gateway.media_links import MediaLinks, MediaSource
    from gateway.metrics import Metrics
    from gateway.store import Store

log = logging.getLogger(__name__)


class ChannelSettings(pydantic.BaseModel):
    """Base of every channel's settings model: frozen, and unknown keys are mistakes."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    type: str
    #: the agent this channel talks to (``[agents.<name>]``; unset: ``[agent]``)
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """A webhook request, framework-free: what verification and parsing need."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes
    #: the URL the platform called, rebuilt from ``public_url`` (what Twilio signs)
    public_url: str

    def form(self) -> dict[str, str]:
        """The body as ``application/x-www-form-urlencoded`` (last value wins)."""
        from urllib.parse import parse_qsl

        try:
            text = self.body.decode("utf-8")
            return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookRejected(400, "malformed form body") from exc

    def json(self) -> Any:
        """The body as JSON; a malformed body is a 400, never a 500."""
        import json

        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise WebhookRejected(400, "malformed JSON body") from exc


@dataclass(slots=True)
class WebhookResult:
    """What to answer the platform, and the events to record before answering."""

    events: list[InboundEvent] = field(default_factory=list)
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class Answer:
    """A finished answer: Markdown text and the ids feedback and retry need."""

    text: str
    message_id: str | None = None
    conversation_id: str | None = None


class Services(Protocol):
    """What the core gives each channel: read-only, and valid once the app has started.

    Channels are built with the app, before its cleanup contexts open the store and the HTTP
    session, so a channel reads these on use (in ``initialize`` and later), never in ``__init__``
    (``settings`` and ``metrics`` excepted).
    """

    @property
    def settings(self) -> Settings: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def store(self) -> Store: ...

    @property
    def http(self) -> ClientSession: ...

    @property
    def media(self) -> MediaLinks:
        """Signs the media links put in inbound text (see :mod:`gateway.media_links`)."""
        ...

    async def accept(self, events: Sequence[InboundEvent]) -> list[bool]:
        """Journal (deduplicated) and schedule events; True for each one that was new."""
        ...

    async def run_turn(self, event: InboundEvent, reply: Reply) -> Answer | None:
        """Run one turn now and deliver it through ``reply`` (web chat, voice)."""
        ...

    async def conversation_messages(self, conversation_key: str, *, cursor: str | None = None,
                                    limit: int = 20) -> Page:
        """One page (newest first) of the messages of the conversation ``conversation_key`` is
        in now, read from the agent; empty when there is none (or the next turn starts afresh).
        May raise :class:`gateway.errors.AgentError`."""
        ...


class Reply:
    """Delivers one answer into a channel. The turn runner calls, in order:

    ``start()`` once, ``update(text)`` with the growing Markdown text (each call extends the
    previous one), then ``finish(answer)`` or ``fail(apology)``. Whoever opened the reply calls
    ``close()`` when the turn is over, however it ended. Streaming channels build theirs on
    :class:`gateway.editing.EditingReply`.
    """

    def __init__(self, channel: Channel, event: InboundEvent, progress: Progress) -> None:
        self.channel = channel
        self.event = event
        self.progress = progress

    async def start(self) -> None:
        """The agent is working (typing indicator, placeholder)."""

    async def update(self, text: str) -> None:
        """More answer text arrived; ``text`` is everything so far."""

    async def ready(self) -> None:
        """The whole answer is in; :meth:`finish` follows as soon as it is saved. Nothing shown
        meanwhile would last (a placeholder, an interim edit), so a channel may stop showing."""

    async def finish(self, answer: Answer) -> None:
        """Deliver the complete answer."""
        raise NotImplementedError

    async def fail(self, message: str) -> None:
        """No answer can be produced; tell the user ``message`` instead."""
        await self.finish(Answer(text=message))

    async def close(self) -> None:
        """The turn is over: stop background work (typing, throttled edits). Safe to call twice."""


class BufferedReply(Reply):
    """Collects the answer and sends it once, split to the channel's limit.

    Each part is announced in the progress before it is sent (:meth:`Progress.intend`) and counted,
    with the platform's id for it, right after. A turn resumed after a crash sends only the parts
    that are missing; a part whose send was under way when the previous run stopped is first
    looked up on the platform (:meth:`Channel.find_sent`) and adopted when it arrived.
    """

    async def start(self) -> None:
        await self.channel.typing(self.event)

    async def finish(self, answer: Answer) -> None:
        parts = self.parts(answer)
        sent = await self._reconcile(parts)
        for index in range(sent, len(parts)):
            await self.progress.intend(index)
            last = index == len(parts) - 1
            message_id = await self.send_part(parts[index], answer, last=last)
            self._record(index, message_id)
            if last:
                self.progress.settled()  # the turn finishes next (see Progress.settled)
            else:
                await self.progress.save()

    def parts(self, answer: Answer) -> list[str]:
        """The rendered parts of ``answer``; the same answer must always give the same parts (resumes
        count them). Override to shape them, e.g. a shorter last part where buttons ride on it."""
        return self.channel.split(self.channel.render(answer.text))

    async def send_part(self, text: str, answer: Answer, *, last: bool) -> str | None:
        """Send one rendered part and return the platform's id for it (None when there is none);
        override to attach something to the ``last`` (feedback buttons)."""
        return await self.channel.send_text(self.event, text)

    def _record(self, index: int, message_id: str | None) -> None:
        self.progress.data["parts_sent"] = index + 1
        if message_id is not None:
            self.progress.data.setdefault("sent_ids", {})[str(index)] = message_id
        self.progress.sent()

    async def _reconcile(self, parts: list[str]) -> int:
        """How many parts are delivered, after asking the platform about one a previous run was sending."""
        sent = int(self.progress.data.get("parts_sent", 0))
        intent = self.progress.intent()
        if intent is None:
            return sent
        if intent.part == sent < len(parts):
            found = await self.channel.find_sent(self.event, parts[sent], since=intent.at)
            if found is not None:
                log.info("part %d of %s had arrived before the restart (%s); not sending it again",
                         sent + 1, self.event.journal_key, found)
                self._record(sent, found)
                await self.progress.save()
                return sent + 1
            if not self.channel.finds_sent:
                log.info("part %d of %s may have arrived before the restart; %s cannot tell, so it is "
                         "sent again", sent + 1, self.event.journal_key, self.channel.type)
        self.progress.sent()
        return sent


S = TypeVar("S", bound=ChannelSettings)


class Channel(ABC, Generic[S]):
    """Base class of channel adapters; an async context manager around initialize/shutdown.

    Generic over its settings model, so ``self.settings`` has the channel's own type::

        class SmokeSignals(Channel[SmokeSettings]):
            Settings = SmokeSettings
    """

    #: the entry-point name (``type = "..."`` in the config); set by subclasses
    type: ClassVar[str] = ""
    #: the pydantic model of this channel's config keys (every concrete channel sets it)
    Settings: builtins.type[S]
    #: the most characters one outbound message may carry
    max_text_length: ClassVar[int] = 4000
    #: number parts "(1/3) " when an answer needs several messages
    number_parts: ClassVar[bool] = False
    #: True when :meth:`find_sent` can tell whether a part reached the platform (Twilio's Messages
    #: list); without it a part whose send a crash interrupted is sent again
    finds_sent: ClassVar[bool] = False
    #: False when the channel can only answer inside the request that asked (web chat, a phone
    #: call): nothing can reach the person later, so e.g. a human handoff is declined there
    can_deliver_later: ClassVar[bool] = True

    def __init__(self, name: str, settings: S, services: Services) -> None:
        self.name = name
        self.settings = settings
        self.services = services
        self.log = logging.getLogger(f"switchboard.channel.{name}")
        #: the platform's rate-limit scopes, paced (gateway/pacing.py); API clients use it
        self.pacer = Pacer(name, getattr(services, "metrics", None), lambda: services.store)

    @classmethod
    def validate(cls, name: str, raw: Mapping[str, Any]) -> S:
        """Validate config keys; raise :class:`ConfigError` naming the first bad key."""
        try:
            return cls.Settings.model_validate(dict(raw))
        except pydantic.ValidationError as exc:
            raise ConfigError(describe_validation_error(f"channels.{name}", exc)) from None

    @classmethod
    def from_config(cls, name: str, raw: Mapping[str, Any], services: Services) -> Self:
        return cls(name, cls.validate(name, raw), services)

    # -- lifecycle -------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Open connections; called once before any route is served."""

    async def shutdown(self) -> None:
        """Close what ``initialize`` opened."""

    async def run(self) -> None:
        """Long-running inbound loop for polling channels; the core supervises it."""

    @property
    def polls(self) -> bool:
        """True when this channel has a ``run`` loop the core must start."""
        return type(self).run is not Channel.run

    async def __aenter__(self) -> Self:
        try:
            await self.initialize()
        except BaseException:
            # What initialize() opened before it failed (a session, a client) must not leak.
            await self.shutdown()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # -- inbound ---------------------------------------------------------------------------------
    @property
    def webhook_path(self) -> str:
        return f"/webhooks/{self.name}"

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        """``(label, url)`` pairs to paste into the platform's console (``switchboard check``)."""
        return [("webhook", public_url.rstrip("/") + self.webhook_path)]

    def routes(self) -> list[web.RouteDef]:
        """aiohttp routes this channel serves; by default ``POST /webhooks/<name>``."""
        return [web.post(self.webhook_path, self.handle_webhook)]

    async def verify(self, request: InboundRequest) -> None:
        """Check the platform signature on the raw body; raise ``WebhookRejected`` (401/403)."""
        raise WebhookRejected(403, "this channel has no inbound webhook")

    async def parse(self, request: InboundRequest) -> WebhookResult:
        """Turn a verified webhook into events and the answer for the platform."""
        raise WebhookRejected(404, "this channel has no inbound webhook")

    async def resolve_media(self, ref: str, *, stale: bool = False) -> MediaSource:
        """Where the media behind a signed link (``services.media.link(name, ref)``) really is.

        Channels whose inbound media needs the bot's token override this; ``stale`` is True when
        the source given before answered 403/404/410 (an expired CDN link: look it up afresh).
        """
        raise ChannelError(f"channel {self.name!r} serves no media")

    async def handle_webhook(self, request: web.Request) -> web.StreamResponse:
        """The core's webhook flow: read, verify, parse, journal, then acknowledge."""
        inbound = await read_inbound(request, self.services.settings.public_url)
        await self.verify(inbound)
        # Parsing may read the store (thread keys), journaling writes it. A hung store must cost
        # the platform a quick 503 it retries, not a timeout it counts against us.
        limit = self.services.settings.gateway.webhook_store_timeout
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                result = await self.parse(inbound)
                if result.events:
                    await self.services.accept(result.events)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise StoreUnavailable(f"the store did not answer within {limit:g} s") from None
        body = result.body.encode() if isinstance(result.body, str) else result.body
        return web.Response(status=result.status, body=body, content_type=result.content_type)

    # -- outbound --------------------------------------------------------------------------------
    def render(self, markdown: str) -> str:
        """The agent's Markdown in this channel's markup; plain text by default."""
        from gateway.markdown import to_plain

        return to_plain(markdown)

    def split(self, rendered: str) -> list[str]:
        """Cut rendered text into messages this channel accepts."""
        return split_text(rendered, self.max_text_length, numbered=self.number_parts)

    def open_reply(self, event: InboundEvent, progress: Progress) -> Reply:
        """The delivery of one answer; override to stream into a growing message."""
        return BufferedReply(self, event, progress)

    async def typing(self, event: InboundEvent) -> None:
        """Show that an answer is coming, where the platform can."""

    async def send_text(self, event: InboundEvent, text: str) -> str | None:
        """Send one rendered part to the user (buffered channels must override).

        Return the platform's id of the message when it gives one (kept in the progress).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement send_text or open_reply")

    async def find_sent(self, event: InboundEvent, text: str, *, since: float) -> str | None:
        """The id of a message with ``text`` sent for ``event`` at or after ``since`` (Unix time),
        or None. Set ``finds_sent`` when the platform can be asked; by default it cannot."""
        return None

    async def feedback_saved(self, event: InboundEvent) -> None:
        """A feedback button was recorded by the agent; show the choice where possible."""

    async def forget(self, identity: Identity) -> None:
        """A person asked to be forgotten: delete what this channel keeps about them itself."""

    # -- human handoff -----------------------------------------------------------------------------
    def support_desk(self) -> SupportDesk | None:
        """The support desk this channel offers for human handoff (Slack threads...); None: it cannot be one."""
        return None

    @abstractmethod
    def describe(self) -> str:
        """One line for ``switchboard check``: what this instance talks to (no secrets)."""


#: seconds a client gets to send a whole webhook body (platforms need milliseconds; a client that
#: trickles bytes would otherwise hold a connection and a handler for as long as it likes)
BODY_READ_TIMEOUT = 30.0


async def read_inbound(request: web.Request, public_url: str) -> InboundRequest:
    """Read a request into an :class:`InboundRequest`.

    A body over the size limit is a 413, refused on its ``Content-Length`` before any of it is
    read, else as soon as the bytes received pass the limit; a body that takes longer than
    ``BODY_READ_TIMEOUT`` to arrive is a 408.
    """
    limit = request.client_max_size
    if limit and request.content_length is not None and request.content_length > limit:
        raise WebhookRejected(413, f"request body over {limit} bytes")
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise WebhookRejected(413, f"request body over {limit} bytes") from None
    except TimeoutError:
        raise WebhookRejected(408, "request body not received in time") from None
    return InboundRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers=request.headers,
        body=body,
        public_url=public_url.rstrip("/") + request.path_qs,
    )


def describe_validation_error(prefix: str, exc: pydantic.ValidationError) -> str:
    """The first pydantic error as one line: ``channels.x.bot_token: field required``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    where = f"{prefix}.{loc}" if loc else prefix
    kind = err["type"]
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "extra_forbidden":
        return f"{where}: unknown key"
    return f"{where}: {err['msg']}"
