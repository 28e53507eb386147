"""The web chat channel: a chat page and a streaming chat API on the gateway itself.

``GET /chat/<name>/`` serves the page; ``POST /chat/<name>/messages`` takes
``{"sessionId", "message"}`` and answers with the agent's UI message stream, live. There is no
webhook and no journal: the browser holds the connection for the whole turn, so the turn runs
right away through ``services.run_turn``. Each sessionId is its own identity and conversation.
``POST /chat/<name>/feedback`` records thumbs up/down on an answer (journaled, like a button).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pydantic
from aiohttp import web
from pydantic_core import PydanticCustomError

from channels.web.guard import (
    ChatRequestError,
    ClientSlots,
    OriginPolicy,
    RateLimiter,
    body_limit,
    normalise_origin,
    parse_chat_body,
    parse_feedback_body,
)
from channels.web.page import ASSETS, load_assets, security_headers, serve
from channels.web.stream import STREAM_HEADERS, SseSink, StreamReply
from gateway.channel import BODY_READ_TIMEOUT, Answer, Channel, ChannelSettings, Progress, Reply, Services
from gateway.events import Identity, InboundEvent
from gateway.policy import APOLOGY

log = logging.getLogger(__name__)

#: shown when the turn itself crashed; the core's own apology covers agent failures


class WebSettings(ChannelSettings):
    """``[channels.<name>]`` keys of a ``web`` channel."""

    #: browser origins allowed to call the API besides the page's own; ``"*"`` for any
    allowed_origins: tuple[str, ...] = ()
    #: shown as the page title and heading
    title: str = pydantic.Field("Chat", min_length=1, max_length=100)
    max_message_chars: int = pydantic.Field(4000, ge=1, le=100_000)
    #: messages one session may send per minute (a burst of as many is allowed)
    rate_per_minute: float = pydantic.Field(20, gt=0)
    #: answers one client address may have in progress at once
    max_concurrent_per_client: int = pydantic.Field(4, ge=1)
    #: behind a reverse proxy: take the client address from the last ``X-Forwarded-For`` entry
    trust_forwarded_for: bool = False

    @pydantic.field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            try:
                return tuple(normalise_origin(v) if isinstance(v, str) else v for v in value)
            except ValueError as exc:
                raise PydanticCustomError("origin", str(exc)) from None
        return value


class WebChannel(Channel[WebSettings]):
    """The built-in web chat page and its streaming API."""

    type = "web"
    can_deliver_later = False  # answers live only in the HTTP response that asked
    Settings = WebSettings

    def __init__(self, name: str, settings: WebSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        s = self.settings
        self.origins = OriginPolicy(s.allowed_origins, services.settings.public_url)
        self.limiter = RateLimiter(s.rate_per_minute)
        self.slots = ClientSlots(s.max_concurrent_per_client)
        self._turns: set[asyncio.Task[None]] = set()
        self.assets = load_assets(s.title, s.max_message_chars)
        self.feedback_limiter = RateLimiter(s.rate_per_minute)
        listed = list(s.allowed_origins)
        self.page_headers = security_headers(" ".join(["'self'", *listed]) if listed else "'none'")

    @property
    def base_path(self) -> str:
        return f"/chat/{self.name}"

    def routes(self) -> list[web.RouteDef]:
        base = self.base_path
        routes = [
            web.get(base, self.redirect_to_page),
            web.get(base + "/", self.page),
            web.post(base + "/messages", self.messages),
            web.route("OPTIONS", base + "/messages", self.preflight),
            web.post(base + "/feedback", self.feedback),
            web.route("OPTIONS", base + "/feedback", self.preflight),
        ]
        routes += [web.get(f"{base}/static/{name}", self.static) for name in ASSETS]
        return routes

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        root = public_url.rstrip("/") + self.base_path
        return [("chat page", root + "/"), ("chat API", root + "/messages")]

    def describe(self) -> str:
        listed = ", ".join(self.settings.allowed_origins)
        callers = f"same origin and {listed}" if listed else "same origin only"
        return f"web chat page at {self.base_path}/ (API callers: {callers})"

    # -- page --------------------------------------------------------------------------------------
    async def redirect_to_page(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(self.base_path + "/")

    async def page(self, request: web.Request) -> web.StreamResponse:
        return serve(request, self.assets["index.html"], self.page_headers)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.path.rsplit("/", 1)[-1]
        return serve(request, self.assets[name], self.page_headers)

    # -- API ---------------------------------------------------------------------------------------
    async def preflight(self, request: web.Request) -> web.StreamResponse:
        """CORS preflight: answered only for origins that may call the API."""
        origin = request.headers.get("Origin")
        cors = self.origins.cors_headers(origin, _own_origin(request))
        if not cors:
            return self._refuse(ChatRequestError(403, "origin_not_allowed", "This origin may not call the chat."))
        cors.update(
            {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            }
        )
        return web.Response(status=204, headers=cors)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Validate, then stream one turn's answer as a UI message stream."""
        origin = request.headers.get("Origin")
        own = _own_origin(request)
        if not self.origins.allows(origin, own):
            return self._refuse(ChatRequestError(403, "origin_not_allowed", "This origin may not call the chat."))
        cors = self.origins.cors_headers(origin, own)
        try:
            body = await _read_capped(request, body_limit(self.settings.max_message_chars))
            chat = parse_chat_body(body, self.settings.max_message_chars)
            with self.slots.hold(self._client_address(request)):
                self.limiter.take(chat.session_id)
                return await self._answer(request, chat.session_id, chat.text, cors)
        except ChatRequestError as exc:
            return self._refuse(exc, cors)

    async def feedback(self, request: web.Request) -> web.StreamResponse:
        """Thumbs up/down on an answer: journaled like a button press, sent to the agent after."""
        origin = request.headers.get("Origin")
        own = _own_origin(request)
        if not self.origins.allows(origin, own):
            return self._refuse(ChatRequestError(403, "origin_not_allowed", "This origin may not call the chat."))
        cors = self.origins.cors_headers(origin, own)
        try:
            vote = parse_feedback_body(await _read_capped(request, 4096))
            self.feedback_limiter.take(vote.session_id)
        except ChatRequestError as exc:
            return self._refuse(exc, cors)
        # The conversation comes from the session's own state, never from the client, so a
        # session can only rate answers of its own conversation.
        event = InboundEvent(
            channel=self.name,
            key=f"feedback-{uuid.uuid4().hex}",
            identity=Identity(self.type, self.name, vote.session_id),
            scope=vote.session_id,
            kind="feedback",
            meta={"message_id": vote.message_id, "feedback": vote.feedback},
        )
        await self.services.accept([event])
        return web.json_response({"ok": True}, status=202, headers=cors)

    async def _answer(
        self, request: web.Request, session_id: str, text: str, cors: dict[str, str]
    ) -> web.StreamResponse:
        event = InboundEvent(
            channel=self.name,
            key=uuid.uuid4().hex,
            identity=Identity(self.type, self.name, session_id),
            scope=session_id,
            text=text,
        )
        response = web.StreamResponse(headers={**STREAM_HEADERS, **cors})
        if cors:
            response.headers["Access-Control-Expose-Headers"] = "x-vercel-ai-ui-message-stream"
        await response.prepare(request)
        reply = StreamReply(self, event, Progress(), SseSink(response), f"msg_{uuid.uuid4().hex}")
        await reply.begin()
        # The turn runs in its own task: a browser that disconnects (and a server that cancels
        # handlers on disconnect) must not cut a turn in half and lose its conversation state.
        turn = asyncio.create_task(self._turn(event, reply), name=f"web-turn-{self.name}-{event.key}")
        self._turns.add(turn)
        turn.add_done_callback(self._turns.discard)
        await asyncio.shield(turn)
        await reply.sink.write_eof()
        return response

    def open_reply(self, event: InboundEvent, progress: Progress) -> Reply:
        """Journaled web events (feedback) have no open connection to answer into."""
        return _Unanswerable(self, event, progress)

    async def _turn(self, event: InboundEvent, reply: StreamReply) -> None:
        try:
            await self.services.run_turn(event, reply)
        except Exception:
            # The stream is already open, so no error status can be sent any more: apologise in it.
            log.exception("web chat turn failed for channel %s", self.name)
            await reply.fail(APOLOGY)
        if not reply.done:
            # No answer on purpose (a conversation a human took over): close the stream cleanly.
            await reply.finish(Answer(""))

    async def shutdown(self) -> None:
        """Let answers in progress finish within the shutdown grace, then stop them."""
        if self._turns:
            _, pending = await asyncio.wait(set(self._turns), timeout=self.services.settings.gateway.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _client_address(self, request: web.Request) -> str:
        if self.settings.trust_forwarded_for:
            # The right-most entry is the one our own proxy appended; the others are the client's say.
            forwarded = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
            if forwarded:
                return forwarded
        return request.remote or "unknown"

    def _refuse(self, exc: ChatRequestError, cors: dict[str, str] | None = None) -> web.Response:
        self.services.metrics.webhook_rejected.labels(channel=self.name, status=str(exc.status)).inc()
        return web.Response(
            status=exc.status,
            text=json.dumps(exc.body()),
            content_type="application/json",
            headers={**(cors or {}), **exc.headers},
        )


class _Unanswerable(Reply):
    """Delivery for events that arrived without a stream: the page already shows the outcome."""

    async def finish(self, answer: Answer) -> None:
        if answer.text:
            log.info("web chat %s: no open stream for the reply to a %s event", self.channel.name, self.event.kind)


def _own_origin(request: web.Request) -> str:
    """The origin this request was addressed to, as the browser saw it."""
    return f"{request.scheme}://{request.host}"


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` (never read whole)."""
    if request.content_length is not None and request.content_length > limit:
        raise ChatRequestError(413, "body_too_large", f"The request body is over {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT):  # a trickling client must not hold the handler
            while chunk := await request.content.read(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise ChatRequestError(413, "body_too_large", f"The request body is over {limit} bytes.")
                chunks.append(chunk)
    except web.HTTPRequestEntityTooLarge:
        raise ChatRequestError(413, "body_too_large", "The request body is too large.") from None
    except TimeoutError:
        raise ChatRequestError(408, "body_timeout", "The request body did not arrive in time.") from None
    return b"".join(chunks)
