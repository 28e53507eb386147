"""``python -m bench.agent``: the Chatbase emulator in its own process, timestamping its tokens.

It is the stock :class:`adapters.emulator.Emulator` (faults settable over
``POST /_emulator/faults``) with two observers added around its stream writer: when the first and
the last text delta of each answer were handed to the socket (``time.monotonic()``, comparable with
the other processes' clocks), and how many streams were open at once. ``GET /_bench/tokens`` returns
``{"answers": [[userId, first, last], ...], "peak_streams": n}``; ``POST /_bench/reset`` clears them.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import signal
import time
from typing import Any

from aiohttp import web

from adapters.emulator import Emulator, streaming
from bench.procs import READY

_answer: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("answer", default=None)


class TokenClock:
    """What the emulator streamed, when."""

    def __init__(self) -> None:
        self.answers: list[list[Any]] = []
        self.open_streams = 0
        self.peak_streams = 0

    def install(self) -> None:
        """Wrap the emulator's stream writer and event encoder (module globals it looks up per call)."""
        stream, encode = streaming.stream, streaming.encode

        async def timed_stream(request: web.Request, msg: Any, meta: dict[str, Any], **kwargs: Any) -> Any:
            record: list[Any] = [meta.get("userId"), None, None]
            self.answers.append(record)
            _answer.set(record)  # each request runs in its own task: the variable is per answer
            self.open_streams += 1
            self.peak_streams = max(self.peak_streams, self.open_streams)
            try:
                return await stream(request, msg, meta, **kwargs)
            finally:
                self.open_streams -= 1

        def timed_encode(event: dict[str, Any] | str) -> bytes:
            if isinstance(event, dict) and event.get("type") == "text-delta":
                record = _answer.get()
                if record is not None:
                    now = time.monotonic()
                    if record[1] is None:
                        record[1] = now
                    record[2] = now
            return encode(event)

        streaming.stream = timed_stream
        streaming.encode = timed_encode

    async def tokens(self, request: web.Request) -> web.Response:
        return web.json_response({"answers": self.answers, "peak_streams": self.peak_streams})

    async def reset(self, request: web.Request) -> web.Response:
        self.answers.clear()
        self.peak_streams = self.open_streams
        return web.json_response({"reset": True})


async def main() -> None:
    clock = TokenClock()
    clock.install()
    emulator = Emulator()
    app = emulator.app()
    app.router.add_get("/_bench/tokens", clock.tokens)
    app.router.add_post("/_bench/reset", clock.reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(READY + json.dumps({"url": f"http://127.0.0.1:{port}", "api": f"http://127.0.0.1:{port}/api/v2"}),
          flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
