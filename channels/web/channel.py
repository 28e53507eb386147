"""The web chat channel: a chat page and a streaming chat API on the gateway itself.

``GET /chat/<name>/`` serves the page; ``POST /chat/<name>/messages`` takes
``{"sessionId", "message"}`` and answers with the agent's UI message stream, live. There is no
webhook and no journal: the browser holds the connection for the whole turn, so the turn runs
right away through ``services.run_turn``. Each sessionId is its own identity and conversation.
``POST /chat/<name>/feedback`` records thumbs up/down on an answer (journaled, like a button).
``GET /chat/<name>/embed.js`` is the drop-in widget (a launcher and a panel running the page in an
iframe); ``GET /chat/<name>/history`` reads the current conversation back from the agent and
``POST /chat/<name>/new`` starts a new one. With ``identity_secret`` a site can vouch for its
logged-in users (see :mod:`channels.web.visitor`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Annotated, Any
from urllib.parse import unquote

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
    parse_history_query,
    parse_session_body,
)
from channels.web.history import read_history
from channels.web.page import ASSETS, embed_headers, load_assets, security_headers, serve
from channels.web.stream import STREAM_HEADERS, SseSink, StreamReply
from channels.web.visitor import Claim, IdentityVerifier, Visitor, resolve_visitor
from gateway.channel import BODY_READ_TIMEOUT, Answer, Channel, ChannelSettings, Progress, Reply, Services
from gateway.events import InboundEvent
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
    #: the key a site signs its logged-in users' ids with (see channels.web.visitor); empty: off
    identity_secret: str = ""
    #: seconds a signed id stays valid; then it must carry its signing time (``userId:ts``)
    identity_ttl: float | None = pydantic.Field(None, gt=0)
    #: messages shown before the first question (not sent to the agent)
    greeting: tuple[Annotated[str, pydantic.StringConstraints(min_length=1, max_length=1000)], ...] = (
        pydantic.Field((), max_length=5))
    #: questions offered as buttons before the first question; a click sends the text
    suggested_prompts: tuple[Annotated[str, pydantic.StringConstraints(min_length=1, max_length=200)], ...] = (
        pydantic.Field((), max_length=8))

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
        self.assets = load_assets(s.title, s.max_message_chars, s.greeting, s.suggested_prompts)
        self.feedback_limiter = RateLimiter(s.rate_per_minute)
        # Opening the panel reads history; a reload loop must not hammer the agent either.
        self.read_limiter = RateLimiter(max(30.0, s.rate_per_minute))
        self.verifier = IdentityVerifier(s.identity_secret, s.identity_ttl) if s.identity_secret else None
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
            web.post(base + "/new", self.new_conversation),
            web.route("OPTIONS", base + "/new", self.preflight),
            web.get(base + "/history", self.history),
            web.route("OPTIONS", base + "/history", self.preflight),
            web.get(base + "/embed.js", self.embed_script),
        ]
        routes += [web.get(f"{base}/static/{name}", self.static) for name in ASSETS]
        return routes

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        root = public_url.rstrip("/") + self.base_path
        return [("chat page", root + "/"), ("chat API", root + "/messages"), ("embed script", root + "/embed.js")]

    def describe(self) -> str:
        listed = ", ".join(self.settings.allowed_origins)
        callers = f"same origin and {listed}" if listed else "same origin only"
        signed = ", signed visitor ids" if self.verifier else ""
        return f"web chat page at {self.base_path}/ (API callers: {callers}{signed})"

    # -- page --------------------------------------------------------------------------------------
    async def redirect_to_page(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(self.base_path + "/")

    async def page(self, request: web.Request) -> web.StreamResponse:
        return serve(request, self.assets["index.html"], self.page_headers)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.path.rsplit("/", 1)[-1]
        return serve(request, self.assets[name], self.page_headers)

    async def embed_script(self, request: web.Request) -> web.StreamResponse:
        """The widget script, for pages on other sites (whether they may frame the chat is the page's CSP)."""
        cors = self.origins.cors_headers(request.headers.get("Origin"), _own_origin(request))
        return serve(request, self.assets["embed.js"], {**embed_headers(), **cors})

    # -- API ---------------------------------------------------------------------------------------
    async def preflight(self, request: web.Request) -> web.StreamResponse:
        """CORS preflight: answered only for origins that may call the API."""
        origin = request.headers.get("Origin")
        cors = self.origins.cors_headers(origin, _own_origin(request))
        if not cors:
            return self._refuse(_origin_refused())
        reads = request.path.endswith("/history")
        cors.update(
            {
                "Access-Control-Allow-Methods": "GET, OPTIONS" if reads else "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, X-Switchboard-User-Id, X-Switchboard-User-Hash",
                "Access-Control-Max-Age": "600",
            }
        )
        return web.Response(status=204, headers=cors)

    def _caller_cors(self, request: web.Request) -> dict[str, str] | None:
        """The CORS headers an API answer carries, or None when the caller's origin may not call the chat."""
        origin, own = request.headers.get("Origin"), _own_origin(request)
        return self.origins.cors_headers(origin, own) if self.origins.allows(origin, own) else None

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Validate, then stream one turn's answer as a UI message stream."""
        cors = self._caller_cors(request)
        if cors is None:
            return self._refuse(_origin_refused())
        try:
            body = await _read_capped(request, body_limit(self.settings.max_message_chars))
            chat = parse_chat_body(body, self.settings.max_message_chars)
            visitor = self._visitor(chat.session_id, chat.claim)
            with self.slots.hold(self._client_address(request)):
                self.limiter.take(visitor.scope)
                return await self._answer(request, visitor, chat.text, cors)
        except ChatRequestError as exc:
            return self._refuse(exc, cors)

    async def feedback(self, request: web.Request) -> web.StreamResponse:
        """Thumbs up/down on an answer: journaled like a button press, sent to the agent after."""
        cors = self._caller_cors(request)
        if cors is None:
            return self._refuse(_origin_refused())
        try:
            vote = parse_feedback_body(await _read_capped(request, 4096))
            visitor = self._visitor(vote.session_id, vote.claim)
            self.feedback_limiter.take(visitor.scope)
        except ChatRequestError as exc:
            return self._refuse(exc, cors)
        # The conversation comes from the visitor's own state, never from the client, so a
        # visitor can only rate answers of its own conversation.
        event = self._event(visitor, kind="feedback", key=f"feedback-{uuid.uuid4().hex}",
                            meta={"message_id": vote.message_id, "feedback": vote.feedback})
        await self.services.accept([event])
        return web.json_response({"ok": True}, status=202, headers=cors)

    async def new_conversation(self, request: web.Request) -> web.StreamResponse:
        """Start the visitor's conversation afresh, on the agent's side (every device of a verified visitor)."""
        cors = self._caller_cors(request)
        if cors is None:
            return self._refuse(_origin_refused())
        try:
            session_id, claim = parse_session_body(await _read_capped(request, 4096))
            visitor = self._visitor(session_id, claim)
            self.limiter.take(visitor.scope)
        except ChatRequestError as exc:
            return self._refuse(exc, cors)
        # The same path as the /new command: a handoff in progress is handed back, a pause kept.
        event = self._event(visitor, kind="new", key=f"new-{uuid.uuid4().hex}")
        collected = _Collected(self, event, Progress())
        await self.services.run_turn(event, collected)
        return web.json_response({"ok": True, "verified": visitor.verified, "text": collected.text},
                                 headers=cors)

    async def history(self, request: web.Request) -> web.StreamResponse:
        """One page of the visitor's current conversation, newest page first, from the agent."""
        cors = self._caller_cors(request)
        if cors is None:
            return self._refuse(_origin_refused())
        try:
            session_id, cursor, limit = parse_history_query(request.query)
            visitor = self._visitor(session_id, _header_claim(request))
            self.read_limiter.take(visitor.scope)
        except ChatRequestError as exc:
            return self._refuse(exc, cors)
        conversation_key = self._event(visitor, key="history").conversation_key
        page = await read_history(self.services, conversation_key, cursor, limit)
        if page is None:
            return self._refuse(ChatRequestError(503, "history_unavailable",
                                                 "The conversation cannot be read right now."), cors)
        page["verified"] = visitor.verified
        if visitor.notice:
            page["identityNotice"] = visitor.notice
        return web.json_response(page, headers={**cors, "Cache-Control": "no-store"})

    def _visitor(self, session_id: str, claim: Claim | None) -> Visitor:
        return resolve_visitor(self.name, session_id, claim, self.verifier)

    def _event(self, visitor: Visitor, **fields: Any) -> InboundEvent:
        return InboundEvent(
            channel=self.name,
            identity=visitor.identity,
            scope=visitor.scope,
            reply={"session": visitor.session_id, "verified": visitor.verified},
            **fields,
        )

    async def _answer(
        self, request: web.Request, visitor: Visitor, text: str, cors: dict[str, str]
    ) -> web.StreamResponse:
        event = self._event(visitor, key=uuid.uuid4().hex, text=text)
        response = web.StreamResponse(headers={**STREAM_HEADERS, **cors})
        if cors:
            response.headers["Access-Control-Expose-Headers"] = "x-vercel-ai-ui-message-stream"
        await response.prepare(request)
        reply = StreamReply(self, event, Progress(), SseSink(response), f"msg_{uuid.uuid4().hex}", visitor.notice)
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


class _Collected(Reply):
    """Keeps the text of an answer given inside a plain JSON response (starting afresh)."""

    text = ""

    async def finish(self, answer: Answer) -> None:
        self.text = answer.text


def _header_claim(request: web.Request) -> Claim | None:
    """A signed identity sent in headers (GET requests carry no body); the id is percent-encoded."""
    user_id = request.headers.get("X-Switchboard-User-Id")
    if not user_id:
        return None
    return Claim(unquote(user_id), request.headers.get("X-Switchboard-User-Hash", ""))


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


def _origin_refused() -> ChatRequestError:
    return ChatRequestError(403, "origin_not_allowed", "This origin may not call the chat.")
