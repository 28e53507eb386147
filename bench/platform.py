"""``python -m bench.platform``: the fake Slack and Twilio APIs in their own process.

They are the test suite's fakes (``tests/fakes``), which answer like the real APIs and record every
call with ``time.monotonic()``. A small control app reports per conversation (the Slack channel or
the SMS recipient) when each call arrived and whether the complete answer was delivered:

* ``GET /_bench/done`` → ``{"done": n}``: conversations whose answer text arrived complete;
* ``GET /_bench/calls`` → ``{"<recipient>": [[t, method, complete], ...]}``;
* ``POST /_bench/reset`` forgets everything.

"Complete" means the text holds :data:`END_MARK`, the end of every emulator answer to an ordinary
message (brain rule e).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

from aiohttp import web

from bench.procs import READY
from tests.fakes.slack import FakeSlack
from tests.fakes.twilio import FakeTwilio

END_MARK = "of this conversation."


class TimedTwilio(FakeTwilio):
    """The fake Twilio, noting when each message request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    async def __aenter__(self) -> TimedTwilio:
        await super().__aenter__()
        return self

    async def _create_message(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        return await super()._create_message(request)


class Platform:
    def __init__(self, slack: FakeSlack, twilio: TimedTwilio) -> None:
        self.slack, self.twilio = slack, twilio

    def calls(self) -> dict[str, list[list[Any]]]:
        out: dict[str, list[list[Any]]] = {}
        for call in self.slack.calls:
            channel = call.params.get("channel")
            if call.status == 200 and channel and call.method.startswith("chat."):
                complete = END_MARK in str(call.params.get("text", ""))
                out.setdefault(str(channel), []).append([call.at, call.method, complete])
        for at, (_, _, form, accepted) in zip(self.twilio.arrivals, self.twilio.requests, strict=False):
            if accepted:
                out.setdefault(form["To"], []).append([at, "Messages", END_MARK in form.get("Body", "")])
        return out

    async def done(self, request: web.Request) -> web.Response:
        count = sum(any(c[2] for c in calls) for calls in self.calls().values())
        return web.json_response({"done": count})

    async def all_calls(self, request: web.Request) -> web.Response:
        return web.json_response(self.calls())

    async def reset(self, request: web.Request) -> web.Response:
        self.slack.calls.clear()
        self.slack.messages.clear()
        self.twilio.messages.clear()
        self.twilio.requests.clear()
        self.twilio.arrivals.clear()
        return web.json_response({"reset": True})


async def main() -> None:
    async with FakeSlack() as slack, TimedTwilio() as twilio:
        platform = Platform(slack, twilio)
        app = web.Application()
        app.router.add_get("/_bench/done", platform.done)
        app.router.add_get("/_bench/calls", platform.all_calls)
        app.router.add_post("/_bench/reset", platform.reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        control = f"http://127.0.0.1:{runner.addresses[0][1]}"
        info = {"control": control, "slack": slack.api_base, "twilio": twilio.url,
                "slack_token": slack.token, "twilio_sid": twilio.account_sid, "twilio_token": twilio.auth_token}
        print(READY + json.dumps(info), flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
