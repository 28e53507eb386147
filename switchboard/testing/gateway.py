"""Run a real gateway in-process against the Chatbase emulator, on real ports.

    async with running_gateway({"web": {"type": "web"}}) as gw:
        ... gw.url, gw.emulator, await gw.idle(), gw.channel("web")

Other top-level config sections ([commands], [linking], [handoff], [logging]) go in ``sections``::

    async with running_gateway(channels, {"commands": {"enabled": True}}) as gw: ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.app import build_app
from gateway.channel import Channel, Services
from gateway.cli import free_port
from gateway.commands import Controls
from gateway.config import Settings, parse_settings
from gateway.dispatch import Dispatcher
from gateway.services import CHANNELS, CONTROLS, DISPATCHER, METRICS, AppServices


@dataclass
class GatewayUnderTest:
    url: str
    app: web.Application
    emulator: Any
    settings: Settings

    @property
    def services(self) -> Services:
        """What the channels see: settings, metrics, store, HTTP session."""
        return AppServices(self.app, self.settings, self.app[METRICS])

    @property
    def controls(self) -> Controls:
        return self.app[CONTROLS]

    @property
    def dispatcher(self) -> Dispatcher:
        return self.app[DISPATCHER]

    def channel(self, name: str) -> Channel:
        return self.app[CHANNELS][name]

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until every accepted event has been fully processed."""
        await asyncio.wait_for(self.app[DISPATCHER].idle(), timeout)


def make_settings(
    channels: Mapping[str, Mapping[str, Any]],
    sections: Mapping[str, Any] | None = None,
    *,
    port: int,
    api_base: str,
    store: str = "memory://",
    tools: Mapping[str, Any] | None = None,
    gateway: Mapping[str, Any] | None = None,
    agent: Mapping[str, Any] | None = None,
) -> Settings:
    url = f"http://127.0.0.1:{port}"
    return parse_settings(
        {
            "gateway": {"host": "127.0.0.1", "port": port, "public_url": url, "store": store,
                        "shutdown_grace": 2, **(gateway or {})},
            # Small timeouts and attempts keep failure tests fast; tests may override.
            "agent": {"api_base": api_base, "api_key": "test-key", "agent_id": "test-agent",
                      "timeout": 10, "max_attempts": 3, **(agent or {})},
            "channels": {k: dict(v) for k, v in channels.items()},
            "tools": dict(tools or {}),
            **(sections or {}),
        },
        env={},
    )


@asynccontextmanager
async def running_gateway(
    channels: Mapping[str, Mapping[str, Any]],
    sections: Mapping[str, Any] | None = None,
    *,
    store: str = "memory://",
    tools: Mapping[str, Any] | None = None,
    gateway: Mapping[str, Any] | None = None,
    agent: Mapping[str, Any] | None = None,
    emulator: Any = None,
    emulator_url: str | None = None,
) -> AsyncIterator[GatewayUnderTest]:
    """A started gateway whose agent is a fresh (or the given) emulator.

    Pass ``emulator`` *and* ``emulator_url`` to share one already-served emulator between gateways.
    """
    from contextlib import nullcontext

    from adapters.emulator import Emulator

    emulator = emulator or Emulator()
    serving: Any = nullcontext(emulator_url) if emulator_url else emulator.serve("127.0.0.1", 0)
    async with serving as api_base:
        port = free_port()
        settings = make_settings(channels, sections, port=port, api_base=api_base, store=store, tools=tools,
                                 gateway=gateway, agent=agent)
        app = build_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            yield GatewayUnderTest(f"http://127.0.0.1:{port}", app, emulator, settings)
        finally:
            await runner.cleanup()
