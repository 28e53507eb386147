"""The emulator as an aiohttp application: middleware, control endpoints, serving.

Every ``/api/v2`` request goes through the same steps, in the real API's order: recorded →
``latency`` → rate limit (headers always, 429 only when enforced) → injected failure →
Bearer auth (not for health) → agent lookup (``missing-agent`` is 404) → the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from adapters.emulator.envelope import ApiError
from adapters.emulator.faults import Faults, RateInfo, RateLimiter
from adapters.emulator.routes import Api
from adapters.emulator.state import State

log = logging.getLogger(__name__)

API_PREFIX = "/api/v2"
CONTROL_PREFIX = "/_emulator"
#: The agent id that does not exist.
MISSING_AGENT = "missing-agent"

_RATE = web.RequestKey("emulator_rate", RateInfo)
_REQUEST_ID = web.RequestKey("emulator_request_id", str)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One API request as the emulator received it (the Authorization header is never kept)."""

    method: str
    path: str
    json: Any
    query: dict[str, str] = field(default_factory=dict)


class Emulator:
    """A local Chatbase API v2: documented endpoints, deterministic answers, injectable faults.

    ``legacy_events`` streams the older event generation (``start`` + id-less ``text-delta``,
    ``finish`` with ``metadata``; ``faults.stream_shape`` picks any documented shape);
    ``rate_limit`` enforces the sliding window (100 requests per 10 s per key and IP unless
    ``rate_limit_max``/``rate_limit_window`` say otherwise; also settable over the control
    endpoint as ``{"rate_limit": {"enforced", "max", "window"}}``), answering 429 with
    ``Retry-After``; ``rate_limiter.refused`` counts those refusals.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        token_delay: float = 0.0,
        legacy_events: bool = False,
        rate_limit: bool = False,
        rate_limit_max: int = 100,
        rate_limit_window: float = 10.0,
    ) -> None:
        self._initial_delays = (latency, token_delay)
        self._initial_shape = "legacy" if legacy_events else "newer"
        self.faults = Faults(latency, token_delay, stream_shape=self._initial_shape)
        self.requests: list[RecordedRequest] = []
        self.state = State()
        self.rate_limiter = RateLimiter(rate_limit_max, rate_limit_window, enforced=rate_limit)
        #: the API base URL while :meth:`serve` runs, else None
        self.base_url: str | None = None

    def app(self) -> web.Application:
        """A new aiohttp application serving this emulator (API under ``/api/v2``)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=1024 * 1024)
        Api(self.state, self.faults).add_routes(app, API_PREFIX)
        app.router.add_get(CONTROL_PREFIX + "/requests", self._control_requests)
        app.router.add_get(CONTROL_PREFIX + "/faults", self._control_faults)
        app.router.add_post(CONTROL_PREFIX + "/faults", self._control_faults)
        app.router.add_post(CONTROL_PREFIX + "/reset", self._control_reset)
        app.on_response_prepare.append(_add_headers)
        return app

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0 picks a free port); yields the API base URL."""
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound_port = runner.addresses[0][1]
            shown = f"[{host}]" if ":" in host else host
            self.base_url = f"http://{shown}:{bound_port}{API_PREFIX}"
            yield self.base_url
        finally:
            self.base_url = None
            await runner.cleanup()

    def reset(self) -> None:
        """Forget conversations, recorded requests, queued faults and rate-limit counts."""
        self.state.reset()
        self.requests.clear()
        self.faults.clear(*self._initial_delays, stream_shape=self._initial_shape)
        self.rate_limiter.reset()

    def end_conversation(self, conversation_id: str, status: str = "ended") -> None:
        """Mark a conversation as no longer ongoing (``ended`` or ``taken_over``)."""
        self.state.conversations[conversation_id].status = status

    # -- the API pipeline -----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        request[_REQUEST_ID] = "req_" + secrets.token_hex(8)
        await self._record(request)
        try:
            if self.faults.latency > 0:
                await asyncio.sleep(self.faults.latency)
            token = _bearer(request)
            rate = self.rate_limiter.hit(f"{token or ''}|{request.remote}")
            request[_RATE] = rate
            if rate.retry_after is not None:
                raise ApiError(429, "RATE_LIMIT_TOO_MANY_REQUESTS", "Too many requests, slow down")
            failure = self.faults.take_failure()
            if failure is not None:
                headers = {} if failure.retry_after is None else {"Retry-After": _seconds(failure.retry_after)}
                raise ApiError(failure.status, failure.code, "Injected failure", headers=headers)
            if request.path != API_PREFIX + "/health" and not token:
                raise ApiError(401, "AUTH_MISSING_API_KEY", "Missing API key: send Authorization: Bearer <key>")
            if request.match_info.get("agentId") == MISSING_AGENT:
                raise ApiError(404, "AGENT_NOT_FOUND", "Agent not found")
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPException as exc:
            if exc.status == 405:
                return ApiError(405, "METHOD_NOT_ALLOWED", "Method not allowed").response()
            if exc.status == 413:
                return ApiError(413, "VALIDATION_INVALID_BODY", "Request body too large").response()
            return ApiError(exc.status, "RESOURCE_NOT_FOUND", "Route not found").response()
        except Exception:
            log.exception("emulator endpoint failed")
            return ApiError(500, "INTERNAL_SERVER_ERROR", "Internal server error").response()

    async def _record(self, request: web.Request) -> None:
        body: Any = None
        try:
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, web.HTTPException):
            body = None
        self.requests.append(RecordedRequest(request.method, request.path, body, dict(request.query)))

    # -- control endpoints (for other processes) ------------------------------------------------

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [asdict(r) for r in self.requests]})

    async def _control_faults(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                doc = await request.json()
                if isinstance(doc, dict) and "rate_limit" in doc:
                    probe = RateLimiter(self.rate_limiter.limit, self.rate_limiter.window,
                                        enforced=self.rate_limiter.enforced)
                    probe.apply(doc["rate_limit"])  # validate before changing anything
                    doc = {k: v for k, v in doc.items() if k != "rate_limit"}
                    self.faults.apply(doc)
                    self.rate_limiter.apply(probe.snapshot())
                else:
                    self.faults.apply(doc)
            except (ValueError, TypeError) as exc:
                return web.json_response(
                    {"error": {"code": "VALIDATION_INVALID_BODY", "message": str(exc)}}, status=400
                )
        return web.json_response({"data": {**self.faults.snapshot(), "rate_limit": self.rate_limiter.snapshot()}})

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"data": {"reset": True}})


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every API response carries a request id and the rate-limit headers, streams included."""
    request_id = request.get(_REQUEST_ID)
    if request_id is not None:
        response.headers["x-request-id"] = request_id
    rate = request.get(_RATE)
    if rate is not None:
        response.headers.update(rate.headers())


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def run_emulator(host: str = "127.0.0.1", port: int = 8090, *, rate_limit: bool = False) -> None:
    """Serve a fresh emulator until Ctrl-C or SIGTERM (the ``switchboard emulator`` command).

    Prints the API base URL first. ``rate_limit`` enforces the real limit (100 requests per 10 s
    per key and IP, 429 with Retry-After). Raises OSError when the port cannot be bound.
    """
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(host, port, rate_limit))


async def _run(host: str, port: int, rate_limit: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Emulator(rate_limit=rate_limit).serve(host, port) as base_url:
        print(f"Chatbase API v2 emulator at {base_url}", flush=True)
        print(f"Any non-empty API key works; agent id {MISSING_AGENT!r} answers 404.", flush=True)
        await stop.wait()
