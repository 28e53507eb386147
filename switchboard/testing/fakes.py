"""The part every fake platform API shares: an in-process aiohttp server on 127.0.0.1."""

from __future__ import annotations

from typing import Self

from aiohttp import web
from aiohttp.test_utils import TestServer


class FakeServer:
    """Mixin for the fakes: ``async with Fake() as fake`` serves ``add_routes``; ``base_url()`` finds it.

    Subclasses (dataclasses) declare ``_server: TestServer | None = None`` and implement ``add_routes``.
    """

    _server: TestServer | None

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        self.add_routes(app)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.close()

    def base_url(self, path: str = "") -> str:
        """The server's URL (plus ``path``), without a trailing slash."""
        assert self._server is not None, "use the fake inside `async with`"
        return str(self._server.make_url(path)).rstrip("/")
