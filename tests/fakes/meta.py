"""An in-process fake of the Graph API Send endpoint, and builders of Meta's signed webhooks.

    async with FakeGraph() as graph:
        config = {"type": "messenger", "page_access_token": graph.token, "app_secret": APP_SECRET,
                  "verify_token": VERIFY_TOKEN, "api_base": graph.api_base}
        ... graph.texts_to(PSID), graph.actions_to(PSID)

``POST /me/messages?access_token=…`` is recorded and answered like Graph: a wrong token is
error 190, a text over the limit is error 100, ``fail_next`` makes the next text sends return a
chosen Graph error (rate limit, closed 24-hour window, 5xx). Signatures are computed here with ``hmac`` exactly as Meta
documents, independently of the channel's own check.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from switchboard.testing import FakeServer

PAGE_TOKEN = "EAAG-fake-page-token"
APP_SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
VERIFY_TOKEN = "verify-me-please"
PAGE_ID = "104000000000001"
PSID = "6100000000000042"


@dataclass
class GraphCall:
    query: dict[str, str]
    body: dict[str, Any]
    status: int


@dataclass
class _Fault:
    status: int
    error: dict[str, Any]
    headers: dict[str, str]
    count: int


@dataclass
class FakeGraph(FakeServer):
    """``/me/messages`` of one page; ``max_text`` is 2,000 for Messenger, 1,000 for Instagram."""

    token: str = PAGE_TOKEN
    max_text: int = 2000
    calls: list[GraphCall] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    #: CDN file names that answer 403 like an expired Meta CDN URL
    expired: set[str] = field(default_factory=set)
    #: message id -> the CDN file names of its attachments, for Graph's attachments edge
    attachments: dict[str, list[str]] = field(default_factory=dict)
    _mids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: TestServer | None = None
    #: seconds a send waits, after it took effect, before it answers
    latency: float = 0.0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v21.0/me/messages", self._messages)
        app.router.add_get("/v21.0/{mid}/attachments", self._attachments)
        app.router.add_get("/cdn/{name}", self._cdn)

    @property
    def api_base(self) -> str:
        return self.base_url("/v21.0")

    def fail_next(self, status: int, code: int, *, subcode: int | None = None, message: str = "test fault",
                  headers: dict[str, str] | None = None, count: int = 1) -> None:
        error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                                 "fbtrace_id": "AbCdEf"}
        if subcode is not None:
            error["error_subcode"] = subcode
        self._faults.append(_Fault(status, error, headers or {}, count))

    def sent(self) -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.status == 200]

    def cdn_url(self, name: str) -> str:
        """A CDN URL of the fake, like the ones in attachment payloads."""
        return self.base_url(f"/cdn/{name}")

    async def _cdn(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in self.expired:
            return web.Response(status=403, text="URL signature expired")
        return web.Response(body=f"cdn file {name}".encode(), content_type="image/jpeg")

    async def _attachments(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") != self.token:
            return web.json_response({"error": {"message": "Invalid OAuth access token.", "code": 190}}, status=400)
        names = self.attachments.get(request.match_info["mid"])
        if names is None:
            return web.json_response({"error": {"message": "Unsupported get request.", "code": 100}}, status=400)
        data = [{"id": f"att{i}", "mime_type": "image/jpeg",
                 "image_data": {"url": self.cdn_url(name + ".fresh")}} for i, name in enumerate(names)]
        return web.json_response({"data": data})

    def texts_to_ref(self, user_ref: str) -> list[str]:
        return [b["message"]["text"] for b in self.sent()
                if b["recipient"].get("user_ref") == user_ref and "message" in b]

    def texts_to(self, recipient: str) -> list[str]:
        return [b["message"]["text"] for b in self.sent() if b["recipient"].get("id") == recipient and "message" in b]

    def actions_to(self, recipient: str) -> list[str]:
        return [b["sender_action"] for b in self.sent()
                if b["recipient"].get("id") == recipient and "sender_action" in b]

    async def _messages(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        body = await request.json()
        if query.get("access_token") != self.token:
            return self._error(query, body, 400, {"message": "Invalid OAuth access token.", "code": 190})
        for fault in self._faults:
            if fault.count > 0 and "message" in body:  # typing indicators never fail here
                fault.count -= 1
                return self._error(query, body, fault.status, fault.error, fault.headers)
        to = body.get("recipient") or {}
        recipient = to.get("id") or to.get("user_ref")
        if not recipient:
            return self._error(query, body, 400, {"message": "(#100) param recipient must be non-empty.", "code": 100})
        if "sender_action" in body:
            self.calls.append(GraphCall(query, body, 200))
            return web.json_response({"recipient_id": recipient})
        text = (body.get("message") or {}).get("text", "")
        if body.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return self._error(query, body, 400, {"message": "(#100) messaging_type is required", "code": 100})
        if not text or len(text) > self.max_text:
            return self._error(query, body, 400, {
                "message": f"(#100) Length of param message[text] must be less than or equal to {self.max_text}",
                "code": 100})
        self.calls.append(GraphCall(query, body, 200))
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response({"recipient_id": recipient, "message_id": f"m_{next(self._mids)}"})

    def _error(self, query: dict[str, str], body: dict[str, Any], status: int, error: dict[str, Any],
               headers: dict[str, str] | None = None) -> web.Response:
        self.calls.append(GraphCall(query, body, status))
        return web.json_response({"error": error}, status=status, headers=headers)


# -- what Meta sends us ------------------------------------------------------------------------------
_mid = itertools.count(1)


def signature(body: bytes, secret: str = APP_SECRET) -> str:
    """``X-Hub-Signature-256`` as Meta computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def text_item(text: str, *, sender: str = PSID, page: str = PAGE_ID, mid: str | None = None,
              timestamp: int | None = None, quick_reply: str | None = None, echo: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"mid": mid or f"m_in_{next(_mid)}", "text": text}
    if quick_reply is not None:
        message["quick_reply"] = {"payload": quick_reply}
    if echo:
        message["is_echo"] = True
        sender, page = page, sender
    return {"sender": {"id": sender}, "recipient": {"id": page},
            "timestamp": timestamp or int(time.time() * 1000), "message": message}


def postback_item(payload: str, title: str, *, sender: str = PSID, page: str = PAGE_ID,
                  mid: str | None = None, timestamp: int | None = None) -> dict[str, Any]:
    postback: dict[str, Any] = {"title": title, "payload": payload}
    if mid:
        postback["mid"] = mid
    return {"sender": {"id": sender}, "recipient": {"id": page},
            "timestamp": timestamp or int(time.time() * 1000), "postback": postback}


def receipt_items(sender: str = PSID, page: str = PAGE_ID) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [
        {"sender": {"id": sender}, "recipient": {"id": page}, "timestamp": now,
         "delivery": {"mids": ["m_1"], "watermark": now}},
        {"sender": {"id": sender}, "recipient": {"id": page}, "timestamp": now, "read": {"watermark": now}},
    ]


def payload(*entries: list[dict[str, Any]], obj: str = "page", page: str = PAGE_ID) -> bytes:
    """A webhook body with one ``entry`` per list of messaging items."""
    now = int(time.time() * 1000)
    return json.dumps({"object": obj, "entry": [{"id": page, "time": now, "messaging": items}
                                                for items in entries]}).encode()


async def post_signed(url: str, body: bytes, secret: str | None = APP_SECRET) -> tuple[int, str]:
    """POST like Meta does; ``secret=None`` sends no signature."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(body, secret)
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.text()
