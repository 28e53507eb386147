"""The aiohttp application: routes, middleware and one cleanup context per resource.

Start-up order (shutdown runs in reverse, and a failed start unwinds only what started):
HTTP session → store → media link key → agent client → conversation controls (linking, handoff) →
turn runner and dispatcher → admin API → each channel → pollers → handoff sweeper → resume
unfinished journal entries. Each resource lives under its own typed key in :mod:`gateway.services`;
each class gets the few resources it uses through its constructor, once they are open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gateway.agent import AgentClient
from gateway.agents import Agents, channel_agents
from gateway.budget import Budget, agent_budgets
from gateway.channel import Channel, Services
from gateway.commands import Controls
from gateway.config import DEFAULT_AGENT, AgentSettings, Settings
from gateway.desk import SupportDesk
from gateway.dispatch import Dispatcher
from gateway.errors import AgentError, ConfigError, StoreUnavailable, SwitchboardError, WebhookRejected
from gateway.handoff import Handoff
from gateway.media_links import ROUTE as MEDIA_ROUTE
from gateway.media_links import MediaLinks, load_key, serve_media
from gateway.metrics import Metrics
from gateway.plugins import load_channel_class, load_store
from gateway.services import (
    AGENT,
    AGENTS,
    CHANNELS,
    CONTROLS,
    DISPATCHER,
    HTTP,
    MEDIA,
    METRICS,
    SETTINGS,
    STORE,
    AppServices,
    resource,
)
from gateway.tools import ToolRunner
from gateway.turns import TurnRunner

log = logging.getLogger(__name__)

AgentFactory = Callable[[aiohttp.ClientSession, AgentSettings, Budget | None], AgentClient]


def default_agent_factory(
    session: aiohttp.ClientSession, settings: AgentSettings, budget: Budget | None
) -> AgentClient:
    from adapters.chatbase import ChatbaseClient

    return ChatbaseClient(session, settings, budget=budget)


def build_channels(settings: Settings, services: Services) -> dict[str, Channel]:
    """Instantiate every configured channel through its entry point (validates its keys)."""
    channels = {}
    for name, raw in settings.channels.items():
        cls = load_channel_class(str(raw["type"]), f"channels.{name}.type")
        channels[name] = cls.from_config(name, raw, services)
    return channels


def desk_of(settings: Settings, channels: Mapping[str, Channel]) -> SupportDesk | None:
    """The ``[handoff]`` desk, if one is configured; a channel that cannot be one is a config mistake."""
    name = settings.handoff.desk
    if name is None or name not in channels:
        return None  # parse_settings already refused a desk without a [channels.<name>] section
    desk = channels[name].support_desk()
    if desk is None:
        raise ConfigError(f"handoff.desk: channels.{name} ({channels[name].type}) cannot be a support desk")
    return desk


def build_app(settings: Settings, *, agent_factory: AgentFactory = default_agent_factory) -> web.Application:
    """The gateway application for ``settings`` (raises ConfigError/PluginError on mistakes)."""
    metrics = Metrics()
    app = web.Application(client_max_size=settings.gateway.max_body, middlewares=[_errors_middleware])
    _quiet_malformed_requests()
    app[SETTINGS] = settings
    app[METRICS] = metrics
    channels = build_channels(settings, AppServices(app, settings, metrics))
    app[CHANNELS] = channels
    desk = desk_of(settings, channels)
    store = load_store(settings.gateway.store)

    if settings.gateway.admin_token:
        from gateway.admin import admin_routes

        app.router.add_routes(admin_routes(settings.gateway.admin_token))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get(MEDIA_ROUTE, _media, allow_head=False)  # HEAD would download the whole file
    for channel in channels.values():
        app.router.add_routes(channel.routes())

    async def http_ctx(app: web.Application) -> AsyncIterator[None]:
        # Every running turn holds an agent stream and makes platform calls: aiohttp's default of
        # 100 connections would cap concurrent answers below max_concurrency.
        connector = aiohttp.TCPConnector(limit=max(100, 2 * settings.gateway.max_concurrency))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            app[HTTP] = session
            yield

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        await store.initialize()
        app[STORE] = store
        try:
            yield
        finally:
            await store.close()

    async def media_ctx(app: web.Application) -> AsyncIterator[None]:
        key = await load_key(settings.gateway.media_secret, app[STORE])
        app[MEDIA] = MediaLinks(key, settings.public_url, settings.gateway.media_link_ttl)
        yield

    by_channel = channel_agents(settings)
    for channel_name, agent_name in by_channel.items():
        metrics.channel_agent.labels(channel_name, agent_name).set(1)

    async def agent_ctx(app: web.Application) -> AsyncIterator[None]:
        every = settings.all_agents
        budgets = agent_budgets(every, app[STORE], metrics)
        clients = {name: agent_factory(app[HTTP], agent, budgets[name]) for name, agent in every.items()}
        app[AGENTS] = Agents(clients, by_channel)
        app[AGENT] = app[AGENTS].default
        yield

    async def controls_ctx(app: web.Application) -> AsyncIterator[None]:
        handoff = None
        if desk is not None:
            handoff = Handoff(settings.handoff, desk=desk, store=app[STORE], agents=app[AGENTS],
                              channels=channels, agent_ids={n: a.agent_id for n, a in settings.all_agents.items()})
        app[CONTROLS] = Controls(settings, app[STORE], handoff)
        yield

    async def dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
        tools = ToolRunner(settings.tools, app[HTTP], metrics)
        runner = TurnRunner(
            agents=app[AGENTS],
            store=app[STORE],
            tools=tools,
            metrics=metrics,
            conversation_ttl=settings.gateway.conversation_ttl,
            max_tool_rounds=settings.gateway.max_tool_rounds,
            controls=app[CONTROLS],
            log_bodies=settings.logging.log_bodies,
        )
        dispatcher = Dispatcher(
            store=app[STORE],
            runner=runner,
            channels=channels,
            metrics=metrics,
            max_concurrency=settings.gateway.max_concurrency,
            lease_ttl=settings.gateway.lease_ttl,
            sweep_interval=settings.gateway.sweep_interval,
            user_rate_limit=settings.gateway.user_rate_limit,
            turn_timeout=settings.gateway.turn_timeout,
            delivery_deadline=settings.gateway.delivery_deadline,
        )
        app[DISPATCHER] = dispatcher
        yield
        await dispatcher.shutdown(0)  # already drained in on_shutdown; cancels stragglers

    app.cleanup_ctx.extend([http_ctx, store_ctx, media_ctx, agent_ctx, controls_ctx, dispatcher_ctx])
    if settings.gateway.admin_token:
        app.cleanup_ctx.append(_admin_ctx)
    for channel in channels.values():
        app.cleanup_ctx.append(_channel_ctx(channel))
        if channel.polls:
            app.cleanup_ctx.append(_poller_ctx(channel))
    app.cleanup_ctx.extend([_handoff_sweeper_ctx, _resume_ctx])

    async def drain_turns(app: web.Application) -> None:
        # on_shutdown runs before any cleanup context unwinds, so in-flight turns finish while
        # their channels, store and agent client are all still open.
        if DISPATCHER in app:
            await app[DISPATCHER].shutdown(settings.gateway.shutdown_grace)

    app.on_shutdown.append(drain_turns)
    return app


async def _admin_ctx(app: web.Application) -> AsyncIterator[None]:
    from gateway.admin import ADMIN, AdminApi

    app[ADMIN] = AdminApi(app[STORE], app[AGENTS], app[CONTROLS], app[CHANNELS])
    yield


async def _handoff_sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    """Handoff timeouts need a sweeper; it starts once the channels that deliver its notes are open."""
    handoff = app[CONTROLS].handoff
    task = asyncio.create_task(handoff.run(), name="handoff-sweeper") if handoff else None
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _resume_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[DISPATCHER].start()
    yield


def _channel_ctx(channel: Channel) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with channel:
            yield

    return ctx


def _poller_ctx(channel: Channel) -> Callable[[web.Application], AsyncIterator[None]]:
    """Supervise a polling channel's ``run()``: restart it with backoff if it crashes."""

    async def supervise() -> None:
        delay = 1.0
        while True:
            started = time.monotonic()
            try:
                await channel.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("channel %s poller crashed; restarting in %.0fs", channel.name, delay)
            delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 60.0)
            await asyncio.sleep(delay)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(supervise(), name=f"poller:{channel.name}")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return ctx


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map our errors to status codes; nothing a client sends becomes a 500."""
    started = time.perf_counter()
    channel = request.match_info.get("channel") or _channel_of(request.path)
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except WebhookRejected as exc:
        if channel:
            metrics.webhook_rejected.labels(channel, str(exc.status)).inc()
        log.info("refused %s %s: %s %s", request.method, request.path, exc.status, exc.reason)
        return web.json_response({"error": exc.reason}, status=exc.status)
    except StoreUnavailable as exc:
        log.error("store unavailable while handling %s: %s", request.path, exc)
        return web.json_response({"error": "temporarily unavailable"}, status=503, headers={"Retry-After": "5"})
    except web.HTTPRequestEntityTooLarge:
        return web.json_response({"error": "request body too large"}, status=413)
    except RequestPayloadError as exc:
        # The body could not be read as sent (a bad Content-Encoding, a broken chunk): the client's fault.
        log.info("refused %s %s: unreadable body (%s)", request.method, request.path, exc)
        return web.json_response({"error": "unreadable request body"}, status=400)
    except web.HTTPException:
        raise
    except SwitchboardError as exc:
        log.exception("unhandled gateway error on %s", request.path)
        return web.json_response({"error": type(exc).__name__}, status=500)
    if channel and request.path.startswith("/webhooks/"):
        elapsed = time.perf_counter() - started
        metrics.ack_seconds.labels(channel).observe(elapsed)
        # DEBUG: at INFO this line was a tenth of the webhook path (docs/benchmarks.md); each turn
        # still logs its outcome at INFO, and the ack histogram counts every webhook.
        log.debug("webhook %s", response.status, extra={"kind": "inbound", "channel": channel,
                                                        "outcome": response.status,
                                                        "duration_ms": round(elapsed * 1000, 1)})
    return response


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs every unparseable request (answered 400), and a body it cannot decode, as an
    ERROR with a traceback; on the internet those are scanners and broken clients, so they become
    one INFO line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if (isinstance(exc, HttpProcessingError) and exc.code < 500) or isinstance(exc, RequestPayloadError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "refused a malformed HTTP request: %s", (str(exc).replace("\n", " "),)
            record.exc_info = record.exc_text = None
        return True


def _quiet_malformed_requests() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(_MalformedRequestFilter())


def _channel_of(path: str) -> str | None:
    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[1] in ("webhooks", "chat") else None


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    problems: dict[str, Any] = {}
    try:
        await asyncio.wait_for(request.app[STORE].ping(), 2)
    except (StoreUnavailable, TimeoutError, OSError) as exc:
        problems["store"] = str(exc) or type(exc).__name__
    agents = request.app[AGENTS]
    # The agents the channels talk to ([agent] too when no channel names one).
    for name in sorted(set(agents.by_channel.values()) or {DEFAULT_AGENT}):
        label = "agent" if name == DEFAULT_AGENT else f"agent.{name}"
        try:
            if not await asyncio.wait_for(agents.clients[name].health(), 3):
                problems[label] = "health check failed"
        except (AgentError, TimeoutError, OSError) as exc:
            problems[label] = str(exc) or type(exc).__name__
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def _media(request: web.Request) -> web.StreamResponse:
    app = request.app
    channels: Mapping[str, Channel] = app[CHANNELS]
    return await serve_media(request, resource(app, MEDIA, "media link signer"), channels, app[HTTP])


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})
