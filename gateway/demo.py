"""``switchboard demo``: the gateway on embedded defaults, nothing to configure.

SQLite under ``./.switchboard/``, the web chat channel, and either the built-in Chatbase emulator
(started in-process on a free port) or the real API when ``CHATBASE_API_KEY`` and
``CHATBASE_AGENT_ID`` are set. With the emulator, a small ``lookupOrder`` endpoint is served too,
so "Where is order 1234?" shows a whole client-side tool round trip.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.config import Settings, parse_settings
from gateway.demo_site import DEMO_PAGE_PATH, GREETING, PROMPTS, add_demo_site

DEMO_TOOL_PATH = "/demo/tools/lookupOrder"
_STATUSES = ("processing", "shipped", "out for delivery", "delivered")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def use_real_agent() -> bool:
    return bool(os.environ.get("CHATBASE_API_KEY") and os.environ.get("CHATBASE_AGENT_ID"))


def demo_settings(host: str, port: int, emulator_url: str | None, identity_secret: str = "") -> Settings:
    """The embedded configuration; ``emulator_url`` None means the real Chatbase API."""
    Path(".switchboard").mkdir(exist_ok=True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    public_url = f"http://{shown}:{port}"
    tools: dict[str, Any] = {}
    if emulator_url:
        agent = {"api_base": emulator_url, "api_key": "demo", "agent_id": "demo-agent"}
        tools = {"lookupOrder": {"url": public_url + DEMO_TOOL_PATH}}
    else:
        agent = {"api_key": os.environ["CHATBASE_API_KEY"], "agent_id": os.environ["CHATBASE_AGENT_ID"]}
    return parse_settings({
        "gateway": {"host": host, "port": port, "public_url": public_url,
                    "store": "sqlite:///.switchboard/state.db"},
        "agent": agent,
        # The demo shop page is served by the gateway itself: its origin may frame the chat.
        "channels": {"web": {"type": "web", "title": "Acme Outdoor", "allowed_origins": [public_url],
                             "greeting": list(GREETING), "suggested_prompts": list(PROMPTS),
                             "identity_secret": identity_secret or secrets.token_hex(32)}},
        "tools": tools,
    })


async def lookup_order(request: web.Request) -> web.Response:
    """A stand-in order system: a stable made-up status per order number."""
    body = await request.json()
    order = str((body.get("input") or {}).get("orderId", ""))
    digest = hashlib.sha256(order.encode()).digest()
    return web.json_response({
        "order": order,
        "status": _STATUSES[digest[0] % len(_STATUSES)],
        "eta": _DAYS[digest[1] % len(_DAYS)],
    })


def build_demo_app(host: str, port: int, *, enforce_rate_limit: bool = False) -> tuple[web.Application, str]:
    """The demo application and the line to print once it listens."""
    from gateway.app import build_app

    root = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    secret = secrets.token_hex(32)  # per run: the demo shop signs its pretend user with it
    where = (f"Open {root}{DEMO_PAGE_PATH}  (a demo shop page: click the chat bubble in the corner)\n"
             f"The chat page alone: {root}/chat/web/")
    if use_real_agent():
        settings = demo_settings(host, port, None, secret)
        app = build_app(settings)
        add_demo_site(app, "web", secret)
        return app, f"Switchboard demo (agent: Chatbase API, {settings.agent.agent_id})\n{where}"

    from adapters.emulator import Emulator

    emulator = Emulator(rate_limit=enforce_rate_limit)
    emu_port = free_port()
    emulator_url = f"http://127.0.0.1:{emu_port}/api/v2"
    app = build_app(demo_settings(host, port, emulator_url, secret))
    app.router.add_post(DEMO_TOOL_PATH, lookup_order)
    add_demo_site(app, "web", secret)

    async def emulator_ctx(app: web.Application) -> AsyncIterator[None]:
        async with emulator.serve("127.0.0.1", emu_port):
            yield

    app.cleanup_ctx.insert(0, emulator_ctx)
    banner = (f"Switchboard demo (agent: built-in Chatbase emulator at {emulator_url})\n{where}\n"
              "Try: hello, markdown, Where is order 1234?")
    return app, banner


def run_demo(host: str, port: int, *, enforce_rate_limit: bool = False) -> None:
    app, banner = build_demo_app(host, port, enforce_rate_limit=enforce_rate_limit)

    def announce(_: str) -> None:
        # run_app calls this once the socket is bound, so the URL works when it is printed.
        print(banner, flush=True)

    web.run_app(app, host=host, port=port, print=announce, shutdown_timeout=5)
