"""Helpers shared by the Chatbase client tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.chatbase import ChatbaseClient
from gateway.agent import AgentEvent, Finish, TextDelta
from gateway.config import AgentSettings

API_KEY = "sk-test-do-not-log-me"
STREAMS = Path(__file__).parent.parent / "data" / "streams"


def make_client(
    session: aiohttp.ClientSession,
    url: str,
    *,
    api_key: str = API_KEY,
    agent_id: str = "agent-1",
    timeout: float = 5.0,
    max_attempts: int = 3,
    **kw: Any,
) -> ChatbaseClient:
    settings = AgentSettings(
        api_base=url, api_key=api_key, agent_id=agent_id, timeout=timeout, max_attempts=max_attempts
    )
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_cap", 0.05)
    return ChatbaseClient(session, settings, **kw)


async def collect(stream: AsyncIterator[AgentEvent]) -> list[AgentEvent]:
    return [event async for event in stream]


def text_of(events: list[AgentEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def finish_of(events: list[AgentEvent]) -> Finish:
    assert isinstance(events[-1], Finish), events[-1]
    return events[-1]


@contextlib.asynccontextmanager
async def raw_server(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """A one-handler server for failures the emulator does not produce."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("/api/v2"))
    finally:
        await server.close()


