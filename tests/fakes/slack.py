"""An in-process fake of the Slack Web API (and the signing of Slack's inbound requests).

    async with FakeSlack() as slack:
        config = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET,
                  "api_base": slack.api_base}
        ... slack.calls_to("chat.update"), slack.thread("C1", "1700000000.000100")

It keeps messages like Slack does (post, update, delete, streams, message ``metadata``), lists them
the way ``conversations.history`` and ``conversations.replies`` do (``oldest``/``latest``/
``inclusive``, ``include_all_metadata``, cursor pages), answers ``ok: false`` the documented way,
and can be told to fail the next calls of a method (``fail_next``), e.g. a 429 with
``Retry-After``. ``latency`` makes every call take effect at once but answer that much later, as a
real API that accepted a message may still be sending its answer when the caller dies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_sdk.signature import SignatureVerifier

from tests.fakes import Refusals

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-1-test-token"
BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM = "T0000001"
#: Slack truncates at 40k characters; anything longer is refused
MAX_TEXT = 40_000


@dataclass
class SlackCall:
    method: str
    params: dict[str, Any]
    status: int
    at: float


@dataclass
class FakeMessage:
    channel: str
    ts: str
    text: str
    thread_ts: str | None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    edits: int = 0
    deleted: bool = False
    streaming: bool = False
    metadata: dict[str, Any] | None = None

    def listed(self, with_metadata: bool) -> dict[str, Any]:
        """The message as conversations.history/replies show it."""
        shown: dict[str, Any] = {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "text": self.text,
                                 "ts": self.ts, "blocks": self.blocks}
        if self.thread_ts:
            shown["thread_ts"] = self.thread_ts
        if with_metadata and self.metadata:
            shown["metadata"] = self.metadata
        return shown


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: float | None
    count: int


class FakeSlack:
    """The Slack Web API under ``/api/<method>``; every request is recorded in ``calls``."""

    def __init__(self, token: str = BOT_TOKEN, app_token: str = APP_TOKEN, bot_user: str = BOT_USER) -> None:
        self.token = token
        self.bot_user = bot_user
        self.app_token = app_token
        #: Socket Mode: open connections, and the envelope ids the client acknowledged
        self.sockets: list[web.WebSocketResponse] = []
        self.acks: list[str] = []
        self._envelopes = itertools.count(1)
        self.calls: list[SlackCall] = []
        self.messages: dict[tuple[str, str], FakeMessage] = {}
        self._faults: dict[str, list[_Fault]] = {}
        #: channels refused with 429 + Retry-After for a while (``refusals.refuse(channel, seconds)``)
        self.refusals = Refusals()
        self._last_ts = 0.0
        self._server: TestServer | None = None
        self.changed = asyncio.Condition()
        #: file ids files.info refuses (deleted, or not shared with the bot)
        self.missing_files: set[str] = set()
        self.downloads: list[str] = []
        #: seconds every API call waits, after taking effect, before it answers
        self.latency = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_get("/api/{method}", self._handle)  # read methods (files.info) take a query
        app.router.add_get("/files-pri/{file}/{name}", self._download)
        app.router.add_get("/socket-mode", self._socket)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in self.sockets:
            await ws.close()
        if self._server is not None:
            await self._server.close()

    @property
    def api_base(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/api/"))

    # -- test controls ---------------------------------------------------------------------------
    def fail_next(
        self, method: str, *, status: int = 429, error: str = "ratelimited",
        retry_after: float | None = 1, count: int = 1,
    ) -> None:
        """Make the next ``count`` calls of ``method`` fail (default: a 429 with Retry-After)."""
        self._faults.setdefault(method, []).append(_Fault(status, error, retry_after, count))

    def calls_to(self, method: str, *, ok_only: bool = False) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method and (not ok_only or c.status == 200)]

    def thread(self, channel: str, thread_ts: str | None = None) -> list[FakeMessage]:
        """Live messages the bot posted in a thread (or at the top level with None), oldest first."""
        found = [
            m for m in self.messages.values()
            if m.channel == channel and m.thread_ts == thread_ts and not m.deleted
        ]
        return sorted(found, key=lambda m: float(m.ts))

    def all_messages(self) -> list[FakeMessage]:
        return sorted((m for m in self.messages.values() if not m.deleted), key=lambda m: float(m.ts))

    async def wait_for(self, predicate: Any, within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked after every API call)."""
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), within)

    # -- the API -----------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        status, body, headers = self._answer(method, request, params)
        self.calls.append(SlackCall(method, params, status, time.monotonic()))
        async with self.changed:
            self.changed.notify_all()
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, request: web.Request, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        # apps.connections.open takes the app-level token, everything else the bot token.
        if token != (self.app_token if method == "apps.connections.open" else self.token):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        retry_after = self.refusals.check(params.get("channel")) if params.get("channel") else None
        if retry_after is not None:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": f"{retry_after:g}"}
        faults = self._faults.get(method)
        if faults:
            fault = faults[0]
            fault.count -= 1
            if fault.count <= 0:
                faults.pop(0)
            headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else {}
            return fault.status, {"ok": False, "error": fault.error}, headers
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        try:
            return 200, {"ok": True, **handler(params)}, {}
        except _Refusal as refusal:
            return 200, {"ok": False, "error": refusal.error}, {}

    # -- Socket Mode -------------------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets),
                            "connection_info": {"app_id": "A0001"}})
        async with self.changed:
            self.changed.notify_all()
        async for msg in ws:
            envelope_id = json.loads(msg.data).get("envelope_id") if msg.data.startswith("{") else None
            if envelope_id:
                self.acks.append(envelope_id)
                async with self.changed:
                    self.changed.notify_all()
        self.sockets.remove(ws)
        return ws

    async def push(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """Send an envelope (``events_api``, ``interactive``) over the open Socket Mode link."""
        await self.wait_for(lambda: bool(self.sockets))
        envelope_id = f"env-{next(self._envelopes)}"
        await self.sockets[-1].send_json({
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": False, "retry_attempt": retry_attempt, "retry_reason": "",
        })
        return envelope_id

    def _new_ts(self) -> str:
        """Unix time with microseconds, unique and increasing, like Slack's message timestamps."""
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    def _apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        assert self._server is not None
        return {"url": str(self._server.make_url("/socket-mode")).replace("http://", "ws://")}

    def _auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://acme.slack.com/", "team": "Acme", "user": "switchboard",
                "team_id": TEAM, "user_id": self.bot_user, "bot_id": BOT_ID}

    def _chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = _required(p, "channel")
        text, blocks = _content(p)
        metadata = _metadata(p.get("metadata"))
        ts = self._new_ts()
        thread_ts = p.get("thread_ts") or None
        self.messages[(channel, ts)] = FakeMessage(channel, ts, text, thread_ts, blocks, metadata=metadata)
        return {"channel": channel, "ts": ts, "message": {"text": text, "ts": ts, "blocks": blocks}}

    def _conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages of a conversation, newest first (thread replies are not listed)."""
        channel = _required(p, "channel")
        found = [m for m in self.messages.values()
                 if m.channel == channel and not m.deleted and m.thread_ts in (None, m.ts)]
        return _page(sorted(found, key=lambda m: float(m.ts), reverse=True), p)

    def _conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        """A thread, oldest first. Only the bot's messages are kept here, so the parent (the user's
        message) is taken as given rather than refused as ``thread_not_found``."""
        channel, parent = _required(p, "channel"), _required(p, "ts")
        found = [m for m in self.messages.values()
                 if m.channel == channel and not m.deleted and (m.ts == parent or m.thread_ts == parent)]
        return _page(sorted(found, key=lambda m: float(m.ts)), p)

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p)
        text, blocks = _content(p)
        message.text = text
        if "blocks" in p:
            message.blocks = blocks
        message.edits += 1
        return {"channel": message.channel, "ts": message.ts, "text": text}

    def _chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p)
        message.deleted = True
        return {"channel": message.channel, "ts": message.ts}

    def _chat_startStream(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = _required(p, "channel")
        thread_ts = _required(p, "thread_ts")
        ts = self._new_ts()
        text = str(p.get("markdown_text") or "")
        self.messages[(channel, ts)] = FakeMessage(channel, ts, text, thread_ts, streaming=True)
        return {"channel": channel, "ts": ts}

    def _chat_appendStream(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p)
        if not message.streaming:
            raise _Refusal("message_not_in_streaming_state")
        message.text += str(_required(p, "markdown_text"))
        message.edits += 1
        return {"channel": message.channel, "ts": message.ts}

    def _chat_stopStream(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p)
        if not message.streaming:
            raise _Refusal("message_not_in_streaming_state")
        message.text += str(p.get("markdown_text") or "")
        message.blocks = list(p.get("blocks") or [])
        message.streaming = False
        return {"channel": message.channel, "ts": message.ts, "message": {"text": message.text}}

    def _assistant_threads_setStatus(self, p: dict[str, Any]) -> dict[str, Any]:
        _required(p, "channel_id")
        _required(p, "thread_ts")
        return {}

    def _files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        file_id = _required(p, "file")
        if file_id in self.missing_files:
            raise _Refusal("file_not_found")
        assert self._server is not None
        url = str(self._server.make_url(f"/files-pri/{TEAM}-{file_id}/download"))
        return {"file": {"id": file_id, "name": "download", "mimetype": "application/octet-stream",
                         "url_private": url, "url_private_download": url}}

    async def _download(self, request: web.Request) -> web.Response:
        """``url_private_download``: only with the bot token in the Authorization header."""
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=302, headers={"Location": "/?redir=login"})  # Slack's answer to strangers
        file_id = request.match_info["file"].removeprefix(f"{TEAM}-")
        self.downloads.append(file_id)
        return web.Response(body=f"slack file {file_id}".encode(), content_type="application/octet-stream")

    def _reactions_add(self, p: dict[str, Any]) -> dict[str, Any]:
        _required(p, "name")
        return {}

    def _message(self, p: dict[str, Any]) -> FakeMessage:
        key = (_required(p, "channel"), _required(p, "ts"))
        message = self.messages.get(key)
        if message is None or message.deleted:
            raise _Refusal("message_not_found")
        return message


class _Refusal(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _required(p: dict[str, Any], key: str) -> str:
    value = p.get(key)
    if not value:
        raise _Refusal(f"invalid_arguments: missing {key}" if key != "channel" else "channel_not_found")
    return str(value)


def _metadata(raw: Any) -> dict[str, Any] | None:
    """``metadata`` as chat.postMessage takes it: an object (or its JSON) with event_type and event_payload."""
    if raw in (None, ""):
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict) or not isinstance(value.get("event_type"), str) \
            or not isinstance(value.get("event_payload"), dict):
        raise _Refusal("invalid_metadata_format")
    return {"event_type": value["event_type"], "event_payload": value["event_payload"]}


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _page(messages: list[FakeMessage], p: dict[str, Any]) -> dict[str, Any]:
    """One page of ``messages`` (already in the method's order), filtered like Slack filters."""
    inclusive = _flag(p.get("inclusive"))
    oldest = float(p.get("oldest") or 0)
    latest = float(p["latest"]) if p.get("latest") else float("inf")

    def within(m: FakeMessage) -> bool:
        ts = float(m.ts)
        return (oldest <= ts if inclusive else oldest < ts) and (ts <= latest if inclusive else ts < latest)

    chosen = [m for m in messages if within(m)]
    limit = max(1, min(int(p.get("limit") or 100), 1000))
    start = int(p.get("cursor") or 0)
    batch = chosen[start:start + limit]
    more = start + limit < len(chosen)
    return {"messages": [m.listed(_flag(p.get("include_all_metadata"))) for m in batch], "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""}}


def _content(p: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    text = str(p.get("text") or "")
    blocks = p.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if not text and not blocks:
        raise _Refusal("no_text")
    if len(text) > MAX_TEXT:
        raise _Refusal("msg_too_long")
    for block in blocks:
        section = block.get("text") if block.get("type") == "section" else None
        if section and len(section.get("text", "")) > 3000:
            raise _Refusal("invalid_blocks")
    if len(blocks) > 50:
        raise _Refusal("invalid_blocks")
    return text, blocks


async def _params(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query)
    raw = await request.read()
    if request.content_type == "application/json":
        return dict(json.loads(raw or b"{}"))
    return dict(urllib.parse.parse_qsl(raw.decode()))


# -- inbound: what Slack sends us -----------------------------------------------------------------
def signed_headers(
    body: bytes, *, secret: str = SECRET, timestamp: int | None = None, content_type: str = "application/json"
) -> dict[str, str]:
    """Headers of a Slack request, signed by slack_sdk's own code (independent of ours)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature, "Content-Type": content_type}


def event_body(event: dict[str, Any], *, event_id: str = "Ev0001", team: str = TEAM) -> bytes:
    """An ``event_callback`` envelope around ``event``."""
    envelope = {
        "token": "legacy", "team_id": team, "api_app_id": "A0001", "event": event,
        "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
        "authorizations": [{"team_id": team, "user_id": BOT_USER, "is_bot": True}],
    }
    return json.dumps(envelope).encode()


def mention(text: str, *, channel: str = "C0001", user: str = "U0001", ts: str = "1690000000.000100",
            thread_ts: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER}> {text}",
                             "ts": ts, "channel": channel, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message(text: str, *, channel: str = "D0001", channel_type: str = "im", user: str = "U0001",
            ts: str = "1690000000.000200", thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
                             "channel_type": channel_type, "event_ts": ts, **extra}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def action_body(message: FakeMessage, action_id: str, *, user: str = "U0001", team: str = TEAM,
                action_ts: str = "1700009999.000001") -> bytes:
    """The form body of a ``block_actions`` click on one of ``message``'s buttons."""
    value = next(
        e["value"] for b in message.blocks if b.get("type") == "actions"
        for e in b["elements"] if e["action_id"] == action_id
    )
    payload = {
        "type": "block_actions",
        "user": {"id": user, "team_id": team},
        "team": {"id": team},
        "api_app_id": "A0001",
        "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel,
                      "thread_ts": message.thread_ts, "is_ephemeral": False},
        "channel": {"id": message.channel},
        "message": {"ts": message.ts, "text": message.text, "blocks": message.blocks,
                    "thread_ts": message.thread_ts},
        "actions": [{"action_id": action_id, "block_id": "switchboard_actions", "value": value,
                     "type": "button", "action_ts": action_ts}],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
