"""A fake Twilio: the Messages REST API (recording every request) and a webhook signer.

Webhooks are signed with ``twilio.request_validator.RequestValidator``, Twilio's own code, so the
gateway's verification is tested against an independent implementation.

The Messages list (``GET …/Messages.json``) filters by ``To``, ``From`` and ``DateSent`` (a
``YYYY-MM-DD`` day in UTC, or ``DateSent<``/``DateSent>`` for on-or-before / on-or-after), newest
first, in pages of ``PageSize`` followed through ``next_page_uri``, as Twilio documents it.
``latency`` makes a create take effect at once but answer that much later.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from switchboard.testing import FakeServer
from tests.fakes import Refusals

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"


@dataclass
class Fault:
    status: int
    code: int | None
    retry_after: float | None
    message: str


@dataclass
class FakeTwilio(FakeServer):
    """Twilio's Messages API on a local port; ``messages`` holds each accepted message's form."""

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    messages: list[dict[str, str]] = field(default_factory=list)
    #: every REST request: (method, path, form, accepted?)
    requests: list[tuple[str, str, dict[str, str], bool]] = field(default_factory=list)
    _faults: list[Fault] = field(default_factory=list)
    #: recipients (``To``) refused with 429 + Retry-After for a while
    refusals: Refusals = field(default_factory=Refusals)
    _server: TestServer | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    #: the Message resources created, oldest first (what the Messages list reads)
    resources: list[dict[str, str]] = field(default_factory=list)
    #: seconds a create waits, after the message exists, before it answers
    latency: float = 0.0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create_message)
        app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self._list_messages)

    @property
    def url(self) -> str:
        """The ``api_base`` to configure."""
        return self.base_url()

    def fail_next(self, status: int, code: int | None = None, count: int = 1,
                  retry_after: float | None = None, message: str = "fault injected") -> None:
        """Answer the next ``count`` message requests with an error like Twilio's."""
        self._faults.extend(Fault(status, code, retry_after, message) for _ in range(count))

    def bodies(self, to: str | None = None) -> list[str]:
        return [m["Body"] for m in self.messages if to is None or m["To"] == to]

    async def _create_message(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}" or \
                request.match_info["sid"] != self.account_sid:
            self.requests.append((request.method, request.path, form, False))
            return _error(401, 20003, "Authenticate")
        retry_after = self.refusals.check(form.get("To", ""))
        if retry_after is not None:
            self.requests.append((request.method, request.path, form, False))
            return _error(429, 20429, "Too Many Requests", {"Retry-After": f"{retry_after:g}"})
        if self._faults:
            fault = self._faults.pop(0)
            self.requests.append((request.method, request.path, form, False))
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return _error(fault.status, fault.code, fault.message, headers)
        missing = [k for k in ("To", "From", "Body") if not form.get(k)]
        if missing:
            self.requests.append((request.method, request.path, form, False))
            return _error(400, 21602, f"missing {missing}")
        if len(form["Body"]) > 1600:
            self.requests.append((request.method, request.path, form, False))
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        self.requests.append((request.method, request.path, form, True))
        self.messages.append(form)
        sid = f"SM{next(self._ids):032x}"
        now = email.utils.format_datetime(datetime.now(UTC), usegmt=False)
        resource = {"sid": sid, "account_sid": self.account_sid, "to": form["To"], "from": form["From"],
                    "body": form["Body"], "status": "queued", "num_segments": "1", "direction": "outbound-api",
                    "date_created": now, "date_updated": now, "date_sent": now,
                    "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"}
        self.resources.append(resource)
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response(resource, status=201)

    async def _list_messages(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}" or \
                request.match_info["sid"] != self.account_sid:
            return _error(401, 20003, "Authenticate")
        q = request.query
        try:
            exact, after, before = (_day(q.get(k)) for k in ("DateSent", "DateSent>", "DateSent<"))
            size = min(max(int(q.get("PageSize", "50")), 1), 1000)
            page = max(int(q.get("Page", "0")), 0)
        except ValueError:
            return _error(400, 20001, "Invalid query parameter")

        def wanted(m: dict[str, str]) -> bool:
            sent = email.utils.parsedate_to_datetime(m["date_sent"]).date()
            return ((not q.get("To") or m["to"] == q["To"]) and (not q.get("From") or m["from"] == q["From"])
                    and (exact is None or sent == exact) and (after is None or sent >= after)
                    and (before is None or sent <= before))

        chosen = [m for m in reversed(self.resources) if wanted(m)]
        batch = chosen[page * size:(page + 1) * size]
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        keep = urllib.parse.urlencode([(k, v) for k, v in q.items() if k not in ("Page", "PageSize", "PageToken")])
        more = (page + 1) * size < len(chosen)
        return web.json_response({
            "messages": batch, "page": page, "page_size": size, "start": page * size,
            "end": page * size + max(len(batch) - 1, 0),
            "uri": f"{base}?{keep}&PageSize={size}&Page={page}",
            "first_page_uri": f"{base}?{keep}&PageSize={size}&Page=0",
            "next_page_uri": f"{base}?{keep}&PageSize={size}&Page={page + 1}&PageToken=PA{page + 1}" if more else None,
            "previous_page_uri": f"{base}?{keep}&PageSize={size}&Page={page - 1}" if page else None,
        })

    # -- the inbound side: what Twilio posts to the gateway ----------------------------------
    def sign(self, url: str, params: Mapping[str, str]) -> str:
        return RequestValidator(self.auth_token).compute_signature(url, dict(params))

    async def post(self, http: aiohttp.ClientSession, url: str, params: Mapping[str, str] | None = None,
                   *, signature: str | None = None, signed_url: str | None = None) -> tuple[int, str, str]:
        """POST a webhook as Twilio would (form body, ``X-Twilio-Signature``); (status, body, type).

        ``signed_url`` is the URL Twilio was configured with, when a proxy sits in between.
        """
        params = dict(params or {})
        sig = self.sign(signed_url or url, params) if signature is None else signature
        async with http.post(url, data=params, headers={"X-Twilio-Signature": sig}) as resp:
            return resp.status, await resp.text(), resp.content_type


def _day(value: str | None) -> Any:
    """A ``YYYY-MM-DD`` filter as a date (Twilio also takes a full ISO 8601 time: its day counts)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).date() if "T" in value \
        else datetime.strptime(value, "%Y-%m-%d").date()


def _error(status: int, code: int | None, message: str, headers: Mapping[str, str] | None = None
           ) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message, "status": status,
                            "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    return web.json_response(body, status=status, headers=dict(headers or {}))


def message_params(body: str, sender: str, to: str, sid: str, *,
                   media: Sequence[tuple[str, str]] = (), **extra: str) -> dict[str, str]:
    """The form of an inbound SMS/WhatsApp webhook; ``media`` is (url, content type) pairs."""
    params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT_SID, "From": sender, "To": to,
              "Body": body, "NumMedia": str(len(media)), "NumSegments": "1", "SmsStatus": "received",
              "ApiVersion": "2010-04-01", **extra}
    for i, (url, ctype) in enumerate(media):
        params[f"MediaUrl{i}"] = url
        params[f"MediaContentType{i}"] = ctype
    return params


def call_params(call_sid: str, caller: str = "+15551230001", to: str = "+15557654321",
                **extra: str) -> dict[str, str]:
    """The form of a voice webhook (call start, gather action, redirect)."""
    return {"CallSid": call_sid, "AccountSid": ACCOUNT_SID, "From": caller, "To": to,
            "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01", **extra}


# -- a stand-in for the gateway core, for unit tests of the channels alone ------------------------
class StubServices:
    """Just enough of ``gateway.channel.Services``: records accepted events, runs scripted turns."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        from gateway.config import parse_settings
        from gateway.metrics import Metrics

        self.settings = parse_settings({})
        self.http = http
        self.metrics = Metrics()
        self.store: Any = None
        self.agent: Any = None
        self.accepted: list[Any] = []
        self.turns: list[Any] = []
        #: ``async (event, reply) -> Answer | None``: what the "agent" does in ``run_turn``
        self.turn: Any = None

    async def accept(self, events: Sequence[Any]) -> list[bool]:
        fresh = []
        for event in events:
            new = all(e.journal_key != event.journal_key for e in self.accepted)
            if new:
                self.accepted.append(event)
            fresh.append(new)
        return fresh

    async def run_turn(self, event: Any, reply: Any) -> Any:
        self.turns.append(event)
        return await self.turn(event, reply)


class StubGateway:
    """One channel served alone on a local port, with the core's error middleware."""

    def __init__(self, channel_cls: Any, name: str, config: Mapping[str, Any],
                 public_url: str | None = None) -> None:
        self.channel_cls, self.name, self.config = channel_cls, name, config
        self._public_url = public_url

    async def __aenter__(self) -> StubGateway:
        from gateway.config import parse_settings
        from gateway.errors import WebhookRejected

        self.http = aiohttp.ClientSession()
        self.services = StubServices(self.http)
        self.channel = self.channel_cls.from_config(self.name, self.config, self.services)

        @web.middleware
        async def rejected(request: web.Request, handler: Any) -> web.StreamResponse:
            try:
                return await handler(request)
            except WebhookRejected as exc:
                return web.Response(status=exc.status, text=exc.reason)

        app = web.Application(middlewares=[rejected])
        app.add_routes(self.channel.routes())
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        #: where the gateway listens; ``public_url`` is what Twilio calls (a proxy in front, maybe)
        self.local_url = str(self._server.make_url("")).rstrip("/")
        self.url = self._public_url or self.local_url
        self.services.settings = parse_settings({"gateway": {"public_url": self.url}})
        await self.channel.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.shutdown()
        await self._server.close()
        await self.http.close()
