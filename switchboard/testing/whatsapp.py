"""An in-process fake of the WhatsApp Cloud API, and builders of the signed webhooks Meta sends.

    from switchboard.testing.whatsapp import FakeWhatsApp, payload, post_signed, text

    async with FakeWhatsApp() as wa:
        config = {"type": "whatsapp", "phone_number_id": PHONE_NUMBER_ID, "access_token": wa.token,
                  "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "api_base": wa.api_base}
        ... wa.texts_to(WA_ID), wa.reads()

It follows the documented contract (developers.facebook.com/documentation/business-messaging/
whatsapp): ``POST /{version}/{phone_number_id}/messages`` with ``Authorization: Bearer`` sends a
message (``text`` up to 4,096 characters; ``interactive`` reply buttons: at most 3, titles up to
20 characters, ids up to 256, body up to 1,024) and answers ``{"messaging_product", "contacts",
"messages": [{"id": "wamid..."}]}``, or marks a received message read (``status: read``, with an
optional ``typing_indicator: {"type": "text"}``) and answers ``{"success": true}``.
``GET /{version}/{media_id}`` gives a media item's download URL, which itself wants the token.
Errors come in Graph's shape: a wrong token is code 190, bad parameters 100 or 131009;
``fail_next`` makes the next sends fail with a chosen error. ``delay`` slows each send before it
is taken (a send whose caller hung up meanwhile is not recorded, like a request that never reached
Meta); ``latency`` answers a send that was taken that much later (the caller may die in between).

The webhook builders use the example values of Meta's webhook reference pages (the business
number id 106540352242922, display number 15550783881, WABA 102290129340398, WhatsApp user
16505551234, wamids shaped like Meta's); signatures are computed with ``hmac`` as Meta documents.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from switchboard.testing.fakes import FakeServer

APP_SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
VERIFY_TOKEN = "verify-me-please"
ACCESS_TOKEN = "EAAJB-fake-system-user-token"
API_VERSION = "v24.0"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"
WABA_ID = "102290129340398"
WA_ID = "16505551234"
PROFILE_NAME = "Sheena Nelson"


@dataclass
class CloudCall:
    path: str
    body: dict[str, Any]
    status: int


@dataclass
class _Fault:
    status: int
    error: dict[str, Any]
    headers: dict[str, str]
    count: int


@dataclass
class FakeWhatsApp(FakeServer):
    """One business phone number's Cloud API."""

    token: str = ACCESS_TOKEN
    phone_number_id: str = PHONE_NUMBER_ID
    #: seconds each message send waits before it is taken
    delay: float = 0.0
    #: seconds each message send is answered after it was taken
    latency: float = 0.0
    calls: list[CloudCall] = field(default_factory=list)
    #: media id -> (content type, bytes) of inbound media the fake can serve
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    _faults: list[_Fault] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: TestServer | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(f"/{API_VERSION}/{{number}}/messages", self._messages)
        app.router.add_get(f"/{API_VERSION}/{{media_id}}", self._media_url)
        app.router.add_get("/download/{media_id}", self._download)

    @property
    def api_base(self) -> str:
        return self.base_url()

    def fail_next(self, status: int, code: int, *, message: str = "test fault", details: str | None = None,
                  headers: dict[str, str] | None = None, count: int = 1) -> None:
        error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                                 "fbtrace_id": "AbCdEfGh"}
        if details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        self._faults.append(_Fault(status, error, headers or {}, count))

    # -- what the tests read -----------------------------------------------------------------
    def sent(self) -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.status == 200 and "to" in c.body]

    def messages_to(self, wa_id: str) -> list[dict[str, Any]]:
        return [b for b in self.sent() if b["to"] == wa_id]

    def texts_to(self, wa_id: str) -> list[str]:
        """Every text the person received, the body of interactive messages included."""
        return [b["text"]["body"] if b["type"] == "text" else b["interactive"]["body"]["text"]
                for b in self.messages_to(wa_id)]

    def reads(self) -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.status == 200 and c.body.get("status") == "read"]

    def wamids(self) -> list[str]:
        return [f"wamid.{self._encode(n)}" for n in range(1, next(self._ids))]

    # -- the API -----------------------------------------------------------------------------------
    async def _messages(self, request: web.Request) -> web.Response:
        path = request.path
        try:
            body = await request.json()
        except ValueError:
            return self._error(path, {}, 400, 100, "(#100) The parameter messaging_product is required.")
        if not self._authorized(request):
            return self._error(path, body, 401, 190, "Invalid OAuth access token - Cannot parse access token")
        if request.match_info["number"] != self.phone_number_id:
            return self._error(path, body, 400, 100, "Unsupported post request. Object with ID does not exist")
        if body.get("messaging_product") != "whatsapp":
            return self._error(path, body, 400, 100, "(#100) The parameter messaging_product is required.")
        if body.get("status") == "read":
            return self._read(path, body)
        if self.delay:
            await asyncio.sleep(self.delay)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the caller is gone: the message never left
        for fault in self._faults:
            if fault.count > 0:
                fault.count -= 1
                return self._error(path, body, fault.status, fault.error["code"], fault.error["message"],
                                   fault.headers, fault.error.get("error_data"))
        problem = _message_problem(body)
        if problem:
            return self._error(path, body, 400, problem[0], problem[1])
        self.calls.append(CloudCall(path, body, 200))
        wamid = f"wamid.{self._encode(next(self._ids))}"
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response({"messaging_product": "whatsapp",
                                  "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                                  "messages": [{"id": wamid}]})

    def _read(self, path: str, body: dict[str, Any]) -> web.Response:
        typing = body.get("typing_indicator")
        if not str(body.get("message_id", "")).startswith("wamid."):
            return self._error(path, body, 400, 100, "(#100) Invalid parameter message_id")
        if typing is not None and typing != {"type": "text"}:
            return self._error(path, body, 400, 100, "(#100) Invalid parameter typing_indicator")
        self.calls.append(CloudCall(path, body, 200))
        return web.json_response({"success": True})

    async def _media_url(self, request: web.Request) -> web.Response:
        media_id = request.match_info["media_id"]
        if not self._authorized(request):
            return self._error(request.path, {}, 401, 190, "Invalid OAuth access token - Cannot parse access token")
        if media_id not in self.media:
            return self._error(request.path, {}, 400, 100, "(#100) Invalid parameter")
        mime, content = self.media[media_id]
        return web.json_response({"messaging_product": "whatsapp", "id": media_id, "mime_type": mime,
                                  "sha256": "0" * 64, "file_size": len(content),
                                  "url": self.base_url(f"/download/{media_id}")})

    async def _download(self, request: web.Request) -> web.Response:
        item = self.media.get(request.match_info["media_id"])
        if not self._authorized(request) or item is None:
            return web.Response(status=401 if item else 404)
        return web.Response(body=item[1], content_type=item[0])

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _error(self, path: str, body: dict[str, Any], status: int, code: int, message: str,
               headers: dict[str, str] | None = None, data: Any = None) -> web.Response:
        self.calls.append(CloudCall(path, body, status))
        error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                                 "fbtrace_id": "AbCdEfGh"}
        if data:
            error["error_data"] = data
        return web.json_response({"error": error}, status=status, headers=headers)

    @staticmethod
    def _encode(n: int) -> str:
        return base64.b64encode(f"HBgLMTY1MDU1NTEyMzQVAgARGBI{n:08d}".encode()).decode()


def _message_problem(body: dict[str, Any]) -> tuple[int, str] | None:
    """The error Meta gives for a malformed send, or None."""
    if not body.get("to"):
        return 100, "(#100) The parameter to is required."
    kind = body.get("type", "text")
    if kind == "text":
        text = (body.get("text") or {}).get("body") or ""
        if not text or len(text) > 4096:
            return 100, "(#100) Param text['body'] must be at most 4096 characters long."
        return None
    if kind != "interactive":
        return 131009, "(#131009) Parameter value is not valid"
    interactive = body.get("interactive") or {}
    buttons = ((interactive.get("action") or {}).get("buttons")) or []
    text = (interactive.get("body") or {}).get("text") or ""
    ids = [((b.get("reply") or {}).get("id") or "") for b in buttons]
    titles = [((b.get("reply") or {}).get("title") or "") for b in buttons]
    if interactive.get("type") != "button" or not 1 <= len(buttons) <= 3 or not text or len(text) > 1024:
        return 131009, "(#131009) Parameter value is not valid"
    if any(not i or len(i) > 256 for i in ids) or len(set(ids)) != len(ids):
        return 131009, "(#131009) Parameter value is not valid: button ids must be unique, 1-256 characters"
    if any(not t or len(t) > 20 for t in titles):
        return 131009, "(#131009) Parameter value is not valid: button title length invalid"
    return None


# -- what Meta sends us ------------------------------------------------------------------------------
_wamid = itertools.count(1)


def inbound_wamid() -> str:
    return "wamid." + base64.b64encode(f"HBgLMTY1MDU1NTEyMzQVAgASGBQz{next(_wamid):012d}".encode()).decode()


def message(kind: str, content: dict[str, Any] | list[Any] | None = None, *, wa_id: str = WA_ID,
            wamid: str | None = None, timestamp: int | None = None, context: dict[str, Any] | None = None,
            **extra: Any) -> dict[str, Any]:
    """One ``messages[]`` item of ``type`` ``kind``."""
    item: dict[str, Any] = {"from": wa_id, "id": wamid or inbound_wamid(),
                            "timestamp": str(timestamp or int(time.time())), "type": kind}
    if content is not None:
        item[kind] = content
    if context is not None:
        item["context"] = context
    item.update(extra)
    return item


def text(body: str, **kw: Any) -> dict[str, Any]:
    return message("text", {"body": body}, **kw)


def button_tap(button_id: str, title: str, *, replied_to: str = "wamid.ours", **kw: Any) -> dict[str, Any]:
    return message("interactive", {"type": "button_reply", "button_reply": {"id": button_id, "title": title}},
                   context={"from": DISPLAY_NUMBER, "id": replied_to}, **kw)


def status(wamid: str, state: str, *, wa_id: str = WA_ID, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``statuses[]`` item (Meta's shape, conversation and pricing left out)."""
    item: dict[str, Any] = {"id": wamid, "status": state, "timestamp": str(int(time.time())),
                            "recipient_id": wa_id}
    if error is not None:
        item["errors"] = [error]
    return item


#: the error of a ``failed`` status for a message sent outside the 24-hour window, as documented
WINDOW_CLOSED_ERROR = {
    "code": 131047,
    "title": "Re-engagement message",
    "message": "Re-engagement message",
    "error_data": {"details": "Message failed to send because more than 24 hours have passed since the "
                              "customer last replied to this number."},
    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
}


def payload(messages: Sequence[dict[str, Any]] = (), statuses: Sequence[dict[str, Any]] = (),
            *, phone_number_id: str = PHONE_NUMBER_ID, name: str = PROFILE_NAME) -> bytes:
    """A webhook body with one change carrying ``messages`` and ``statuses``."""
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": phone_number_id}}
    if messages:
        senders = sorted({m["from"] for m in messages})
        value["contacts"] = [{"profile": {"name": name}, "wa_id": s} for s in senders]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}]}).encode()


def signature(body: bytes, secret: str = APP_SECRET) -> str:
    """``X-Hub-Signature-256`` as Meta computes it (independently of the channel's own check)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_signed(url: str, body: bytes, secret: str | None = APP_SECRET) -> tuple[int, str]:
    """POST a webhook like Meta does; ``secret=None`` sends no signature."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(body, secret)
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()
