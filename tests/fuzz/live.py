"""One real gateway with every inbound surface, on an event loop in a background thread.

Hypothesis drives synchronous test functions, so the gateway (and the fakes of every platform
API it talks to) runs in its own thread and examples talk to it over real sockets with a raw
HTTP/1.1 client: bytes go out exactly as generated, invalid headers and encodings included.

    with LiveGateway() as live:
        response = live.send(RawRequest("POST", "/webhooks/slack", [...], b"..."))
        live.agent_calls(), live.outbound_calls(), live.problems()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from switchboard.testing import GatewayUnderTest, running_gateway
from switchboard.testing.teams import FakeTeams
from switchboard.testing.whatsapp import PHONE_NUMBER_ID, FakeWhatsApp
from tests.fakes.meta import APP_SECRET, VERIFY_TOKEN, FakeGraph
from tests.fakes.slack import SECRET as SLACK_SECRET
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import SECRET as TELEGRAM_SECRET
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

_T = TypeVar("_T")

ADMIN_TOKEN = "fuzz-admin-token-7f3e9a1c"
ALLOWED_ORIGIN = "https://shop.example.com"
SMS_FROM = "+15557654321"
WA_FROM = "whatsapp:+14155238886"
#: the fake Bot Connector's URL once the harness runs (valid Teams activities name it as serviceUrl)
TEAMS_SERVICE_URL = ["http://127.0.0.1:9/"]


@dataclass(frozen=True)
class RawRequest:
    """An HTTP/1.1 request as bytes on the wire; ``Content-Length`` is added unless given."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def encode(self, host: bytes) -> bytes:
        names = {k.lower() for k, _ in self.headers}
        lines = [f"{self.method} {self.target} HTTP/1.1".encode("utf-8", "surrogatepass")]
        if b"host" not in names:
            lines.append(b"Host: " + host)
        lines.append(b"Connection: close")
        lines += [k + b": " + v for k, v in self.headers]
        if b"content-length" not in names and b"transfer-encoding" not in names:
            lines.append(b"Content-Length: %d" % len(self.body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


@dataclass(frozen=True)
class RawResponse:
    status: int
    head: bytes
    body: bytes

    @property
    def content(self) -> bytes:
        """The body with chunked transfer encoding undone."""
        if (self.header("Transfer-Encoding") or "").lower() != "chunked":
            return self.body
        out, rest = bytearray(), self.body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        return bytes(out)

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


async def raw_exchange(port: int, data: bytes, timeout: float = 30.0) -> RawResponse:
    """Send ``data`` on a fresh connection and read the whole answer (the server closes it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        # The server closed without an answer: count it as what a platform would see, a failure.
        return RawResponse(0, head, body)
    return RawResponse(int(parts[1]), head, body)


class ProblemLog(logging.Handler):
    """Collects what must never be logged while serving hostile input: errors with tracebacks.

    aiohttp logs an unhandled handler exception as ``Error handling request`` (and answers 500);
    asyncio logs exceptions nobody retrieved; our own code uses ``log.exception``.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR and (record.exc_info or record.name in ("aiohttp.server", "asyncio")):
            self.records.append(record)

    def describe(self) -> list[str]:
        out = []
        for r in self.records:
            exc = r.exc_info[1] if r.exc_info else None
            out.append(f"{r.name}: {r.getMessage()} ({type(exc).__name__ if exc else '-'}: {exc})")
        return out


class LiveGateway:
    """The gateway with all channels (and ``/admin`` when the build has it) plus platform fakes."""

    def __init__(self, **gateway: Any) -> None:
        self._gateway_options = gateway
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.gw: GatewayUnderTest | None = None
        self.slack: FakeSlack | None = None
        self.twilio: FakeTwilio | None = None
        self.telegram: FakeTelegram | None = None
        self.messenger: FakeGraph | None = None
        self.instagram: FakeGraph | None = None
        self.whatsapp: FakeWhatsApp | None = None
        self.teams: FakeTeams | None = None
        self.problem_log = ProblemLog()
        self._baseline: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LiveGateway:
        logging.getLogger().addHandler(self.problem_log)
        self._thread = threading.Thread(target=self._thread_main, name="fuzz-gateway", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("the gateway under fuzzing did not start") from self._error
        assert self.gw is not None, "the gateway under fuzzing did not start in 30 s"
        self.reset_baseline()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
        logging.getLogger().removeHandler(self.problem_log)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            self.slack = await stack.enter_async_context(FakeSlack())
            self.twilio = await stack.enter_async_context(FakeTwilio())
            self.telegram = await stack.enter_async_context(FakeTelegram())
            self.messenger = await stack.enter_async_context(FakeGraph(max_text=2000))
            self.instagram = await stack.enter_async_context(FakeGraph(max_text=1000))
            self.whatsapp = await stack.enter_async_context(FakeWhatsApp())
            self.teams = await stack.enter_async_context(FakeTeams())
            TEAMS_SERVICE_URL[0] = self.teams.service_url  # where valid Teams activities say to reply
            self.gw = await stack.enter_async_context(
                running_gateway(self.channel_config(), gateway={"admin_token": ADMIN_TOKEN,
                                                                **self._gateway_options})
            )
            self._ready.set()
            await self._stop.wait()

    def channel_config(self) -> dict[str, dict[str, Any]]:
        assert self.slack and self.twilio and self.telegram and self.messenger and self.instagram
        assert self.whatsapp and self.teams
        twilio = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
        return {
            "slack": {"type": "slack", "bot_token": self.slack.token, "signing_secret": SLACK_SECRET,
                      "api_base": self.slack.api_base, "update_interval": 0.02},
            "sms": {"type": "twilio-sms", "from": SMS_FROM, "api_base": self.twilio.url, **twilio},
            "wa": {"type": "twilio-whatsapp", "from": WA_FROM, "api_base": self.twilio.url, **twilio},
            "phone": {"type": "twilio-voice", "answer_budget": 0.5, **twilio},
            "tg": {"type": "telegram", "bot_token": self.telegram.token, "secret_token": TELEGRAM_SECRET,
                   "api_base": self.telegram.api_base},
            "fb": {"type": "messenger", "page_access_token": self.messenger.token, "app_secret": APP_SECRET,
                   "verify_token": VERIFY_TOKEN, "api_base": self.messenger.api_base},
            "ig": {"type": "instagram", "page_access_token": self.instagram.token, "app_secret": APP_SECRET,
                   "verify_token": VERIFY_TOKEN, "api_base": self.instagram.api_base},
            "wac": {"type": "whatsapp", "phone_number_id": PHONE_NUMBER_ID, "access_token": self.whatsapp.token,
                    "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "api_base": self.whatsapp.api_base},
            "teams": self.teams.channel_config(edit_interval=0.05),
            "web": {"type": "web", "allowed_origins": [ALLOWED_ORIGIN], "rate_per_minute": 100_000,
                    "max_concurrent_per_client": 1000},
        }

    # -- driving it ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self.gw is not None
        return int(self.gw.url.rsplit(":", 1)[1])

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 60.0) -> _T:
        """Run ``coro`` on the gateway's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def send(self, request: RawRequest, timeout: float = 30.0) -> RawResponse:
        data = request.encode(f"127.0.0.1:{self.port}".encode())
        return self.run(raw_exchange(self.port, data, timeout), timeout + 5)

    def idle(self, timeout: float = 30.0) -> None:
        """Wait until every journaled event was processed, and every phone call's answer too
        (voice turns run beside the journal, and may outlive the webhook that started them)."""
        assert self.gw is not None
        self.run(self._settle(timeout), timeout + 5)

    async def _settle(self, timeout: float) -> None:
        assert self.gw is not None
        await self.gw.idle(timeout)
        voice: Any = self.gw.channel("phone")
        turns = [p.task for p in voice.calls.values() if p.task is not None and not p.task.done()]
        if turns:
            await asyncio.wait(turns, timeout=timeout)

    # -- what happened ---------------------------------------------------------------------------
    def agent_calls(self) -> int:
        assert self.gw is not None
        return len(self.gw.emulator.requests)

    def outbound_calls(self) -> dict[str, int]:
        """Requests each platform fake received (start-up calls such as ``auth.test`` included)."""
        assert self.slack and self.twilio and self.telegram and self.messenger and self.instagram
        assert self.whatsapp and self.teams
        return {"slack": len(self.slack.calls), "twilio": len(self.twilio.requests),
                "telegram": len(self.telegram.calls), "messenger": len(self.messenger.calls),
                "instagram": len(self.instagram.calls), "whatsapp-cloud": len(self.whatsapp.calls),
                "teams": len(self.teams.calls) + self.teams.tokens_issued}

    def counts(self) -> dict[str, int]:
        """Agent and platform calls so far; compare two with :meth:`calls_since`."""
        return {"agent": self.agent_calls(), **self.outbound_calls()}

    def calls_since(self, before: dict[str, int]) -> dict[str, int]:
        return {k: v - before[k] for k, v in self.counts().items() if v != before[k]}

    def reset_baseline(self) -> None:
        self._baseline = self.counts()
        self.problem_log.records.clear()

    def calls_since_baseline(self) -> dict[str, int]:
        return self.calls_since(self._baseline)

    def problems(self, since: int = 0) -> list[str]:
        """Tracebacks logged so far (or after the first ``since`` of them)."""
        return self.problem_log.describe()[since:]

    def problem_count(self) -> int:
        return len(self.problem_log.records)
