"""An in-process fake of the Slack Web API (Slack's inbound requests: :mod:`tests.fakes.slack_inbound`).

    async with FakeSlack() as slack:
        config = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET,
                  "api_base": slack.api_base}
        ... slack.calls_to("chat.update"), slack.thread("C1", "1700000000.000100")

It keeps messages like Slack does (post, update, delete, streams, message ``metadata``), lists them
the way ``conversations.history`` and ``conversations.replies`` do (``oldest``/``latest``/
``inclusive``, ``include_all_metadata``, cursor pages), answers ``ok: false`` the documented way,
and can be told to fail the next calls of a method (``fail_next``), e.g. a 429 with
``Retry-After``. ``latency`` makes every call take effect at once but answer that much later, as a
real API that accepted a message may still be sending its answer when the caller dies. It also
plays the OAuth side of installing an app into more workspaces (``approve`` gives the code Slack
would redirect with; ``oauth.v2.access`` trades it for a bot token, with a refresh token and expiry
when ``rotation`` is on) and keeps what assistant threads show (``statuses``, ``titles``,
``prompts``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes import Refusals
from tests.fakes.slack_wire import (
    CLIENT_ID,
    CLIENT_SECRET,
    Refusal,
    content,
    flag,
    read_metadata,
    read_params,
    required,
    token_of,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-1-test-token"
BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM = "T0000001"
#: Slack truncates at 40k characters; anything longer is refused


@dataclass
class SlackCall:
    method: str
    params: dict[str, Any]
    status: int
    at: float
    #: the token the call was made with ("" for none, "basic" for client credentials)
    token: str = ""


@dataclass
class FakeBot:
    """A bot token Slack issued: its workspace and bot user, and when it stops working."""

    team: str
    bot_user: str = BOT_USER
    bot_id: str = BOT_ID
    enterprise: str | None = None
    expires_at: float | None = None
    revoked: bool = False


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
        #: every bot token issued, the single-workspace one first
        self.bots: dict[str, FakeBot] = {token: FakeBot(TEAM, bot_user)}
        self._codes: dict[str, tuple[FakeBot, bool, int]] = {}
        self._refresh: dict[str, str] = {}  # refresh token -> the bot token it renews
        self._issued = itertools.count(1)
        #: assistant threads: every status set, and the titles and suggested prompts they show
        self.statuses: list[tuple[str, str, str, list[str]]] = []
        self.titles: dict[tuple[str, str], str] = {}
        self.prompts: dict[tuple[str, str], dict[str, Any]] = {}
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
        params = await read_params(request)
        status, body, headers = self._answer(method, request, params)
        self.calls.append(SlackCall(method, params, status, time.monotonic(), token_of(request, params)))
        async with self.changed:
            self.changed.notify_all()
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, request: web.Request, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        token = token_of(request, params)
        if method == "oauth.v2.access":
            credentials = (params.get("client_id"), params.get("client_secret"))
            if token != "basic" and credentials != (CLIENT_ID, CLIENT_SECRET):
                return 200, {"ok": False, "error": "invalid_client_id"}, {}
        elif not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        elif method == "apps.connections.open":  # takes the app-level token, everything else a bot token
            if token != self.app_token:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
        else:
            bot = self.bots.get(token)
            if bot is None or bot.revoked:
                return 200, {"ok": False, "error": "invalid_auth" if bot is None else "token_revoked"}, {}
            if bot.expires_at is not None and bot.expires_at <= time.time():
                return 200, {"ok": False, "error": "token_expired"}, {}
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
            return 200, {"ok": True, **handler({**params, "_token": token})}, {}
        except Refusal as refusal:
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
        bot = self.bots[str(p["_token"])]
        return {"url": f"https://{bot.team.lower()}.slack.com/", "team": bot.team, "user": "switchboard",
                "team_id": bot.team, "user_id": bot.bot_user, "bot_id": bot.bot_id,
                "enterprise_id": bot.enterprise}

    # -- installing into more workspaces (OAuth v2) ----------------------------------------------
    def approve(self, team: str, *, bot_user: str = BOT_USER, bot_id: str = BOT_ID, enterprise: str | None = None,
                rotation: bool = False, expires_in: int = 43_200) -> str:
        """Someone approved the app for ``team``: the ``code`` Slack redirects the browser with."""
        code = f"code-{next(self._issued)}"
        self._codes[code] = (FakeBot(team, bot_user, bot_id, enterprise), rotation, expires_in)
        return code

    def uninstall(self, team: str) -> None:
        """The workspace removed the app: its tokens stop working."""
        for bot in self.bots.values():
            if bot.team == team:
                bot.revoked = True

    def tokens_of(self, team: str) -> list[str]:
        return [token for token, bot in self.bots.items() if bot.team == team]

    def _oauth_v2_access(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("grant_type") == "refresh_token":
            old = self._refresh.pop(str(p.get("refresh_token")), None)
            if old is None:
                raise Refusal("invalid_refresh_token")
            bot, rotation, expires_in = self.bots[old], True, 43_200
            bot = FakeBot(bot.team, bot.bot_user, bot.bot_id, bot.enterprise)
        else:
            found = self._codes.pop(str(p.get("code")), None)
            if found is None:
                raise Refusal("invalid_code")
            bot, rotation, expires_in = found
        n = next(self._issued)
        token = f"xoxe.xoxb-{bot.team}-{n}" if rotation else f"xoxb-{bot.team}-{n}"
        if rotation:
            bot.expires_at = time.time() + expires_in
        self.bots[token] = bot
        body: dict[str, Any] = {
            "access_token": token, "token_type": "bot", "scope": "chat:write,assistant:write",
            "bot_user_id": bot.bot_user, "app_id": "A0001",
            "team": {"id": bot.team, "name": f"Team {bot.team}"},
            "enterprise": {"id": bot.enterprise, "name": "Org"} if bot.enterprise else None,
            "authed_user": {"id": "UINSTALLER"}, "is_enterprise_install": False,
        }
        if rotation:
            refresh = f"xoxe-1-refresh-{n}"
            self._refresh[refresh] = token
            body |= {"refresh_token": refresh, "expires_in": expires_in}
        return body

    def _chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = required(p, "channel")
        text, blocks = content(p)
        metadata = read_metadata(p.get("metadata"))
        ts = self._new_ts()
        thread_ts = p.get("thread_ts") or None
        self.messages[(channel, ts)] = FakeMessage(channel, ts, text, thread_ts, blocks, metadata=metadata)
        return {"channel": channel, "ts": ts, "message": {"text": text, "ts": ts, "blocks": blocks}}

    def _conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages of a conversation, newest first (thread replies are not listed)."""
        channel = required(p, "channel")
        found = [m for m in self.messages.values()
                 if m.channel == channel and not m.deleted and m.thread_ts in (None, m.ts)]
        return _page(sorted(found, key=lambda m: float(m.ts), reverse=True), p)

    def _conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        """A thread, oldest first. Only the bot's messages are kept here, so the parent (the user's
        message) is taken as given rather than refused as ``thread_not_found``."""
        channel, parent = required(p, "channel"), required(p, "ts")
        found = [m for m in self.messages.values()
                 if m.channel == channel and not m.deleted and (m.ts == parent or m.thread_ts == parent)]
        return _page(sorted(found, key=lambda m: float(m.ts)), p)

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p)
        text, blocks = content(p)
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
        channel = required(p, "channel")
        thread_ts = required(p, "thread_ts")
        ts = self._new_ts()
        text = str(p.get("markdown_text") or "")
        self.messages[(channel, ts)] = FakeMessage(channel, ts, text, thread_ts, streaming=True)
        return {"channel": channel, "ts": ts}

    def _chat_appendStream(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p)
        if not message.streaming:
            raise Refusal("message_not_in_streaming_state")
        message.text += str(required(p, "markdown_text"))
        message.edits += 1
        return {"channel": message.channel, "ts": message.ts}

    def _chat_stopStream(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._message(p)
        if not message.streaming:
            raise Refusal("message_not_in_streaming_state")
        message.text += str(p.get("markdown_text") or "")
        message.blocks = list(p.get("blocks") or [])
        message.streaming = False
        return {"channel": message.channel, "ts": message.ts, "message": {"text": message.text}}

    def _assistant_threads_setStatus(self, p: dict[str, Any]) -> dict[str, Any]:
        key = (required(p, "channel_id"), required(p, "thread_ts"))
        if "status" not in p:
            raise Refusal("invalid_arguments: missing status")
        loading = list(p.get("loading_messages") or [])
        if len(loading) > 10:
            raise Refusal("invalid_arguments")
        self.statuses.append((*key, str(p["status"]), loading))
        return {}

    def status_of(self, channel: str, thread_ts: str) -> str:
        """The status line the thread shows now ("" when none)."""
        shown = [status for c, t, status, _ in self.statuses if (c, t) == (channel, thread_ts)]
        return shown[-1] if shown else ""

    def _assistant_threads_setTitle(self, p: dict[str, Any]) -> dict[str, Any]:
        self.titles[(required(p, "channel_id"), required(p, "thread_ts"))] = required(p, "title")
        return {}

    def _assistant_threads_setSuggestedPrompts(self, p: dict[str, Any]) -> dict[str, Any]:
        prompts = p.get("prompts")
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            raise Refusal("invalid_arguments")
        if not all(isinstance(x, dict) and x.get("title") and x.get("message") for x in prompts):
            raise Refusal("invalid_arguments")
        key = (required(p, "channel_id"), required(p, "thread_ts"))
        self.prompts[key] = {"title": p.get("title"), "prompts": prompts}
        return {}

    def _files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        file_id = required(p, "file")
        if file_id in self.missing_files:
            raise Refusal("file_not_found")
        assert self._server is not None
        team = self.bots[str(p["_token"])].team  # files live in the workspace of the token that asks
        url = str(self._server.make_url(f"/files-pri/{team}-{file_id}/download"))
        return {"file": {"id": file_id, "name": "download", "mimetype": "application/octet-stream",
                         "url_private": url, "url_private_download": url}}

    async def _download(self, request: web.Request) -> web.Response:
        """``url_private_download``: only with the bot token in the Authorization header."""
        bot = self.bots.get(request.headers.get("Authorization", "").removeprefix("Bearer "))
        team, _, file_id = request.match_info["file"].partition("-")
        if bot is None or bot.revoked or bot.team != team:
            return web.Response(status=302, headers={"Location": "/?redir=login"})  # Slack's answer to strangers
        self.downloads.append(file_id)
        return web.Response(body=f"slack file {file_id}".encode(), content_type="application/octet-stream")

    def _reactions_add(self, p: dict[str, Any]) -> dict[str, Any]:
        required(p, "name")
        return {}

    def _message(self, p: dict[str, Any]) -> FakeMessage:
        key = (required(p, "channel"), required(p, "ts"))
        message = self.messages.get(key)
        if message is None or message.deleted:
            raise Refusal("message_not_found")
        return message


def _page(messages: list[FakeMessage], p: dict[str, Any]) -> dict[str, Any]:
    """One page of ``messages`` (already in the method's order), filtered like Slack filters."""
    inclusive = flag(p.get("inclusive"))
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
    return {"messages": [m.listed(flag(p.get("include_all_metadata"))) for m in batch], "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""}}
