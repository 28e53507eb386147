"""An in-process fake of the Telegram Bot API, and builders of the updates Telegram sends.

    async with FakeTelegram() as tg:
        config = {"type": "telegram", "bot_token": tg.token, "secret_token": SECRET,
                  "api_base": tg.api_base}
        ... tg.calls_to("editMessageText"), tg.chat(CHAT_ID)

Methods live under ``/bot<token>/<method>`` like the real API. Messages are kept per chat as the
user would see them. HTML is checked the way Telegram checks it (supported tags only, balanced,
``<>&`` escaped) and refused with "can't parse entities"; visible text over 4,096 characters is
"message is too long"; an edit to identical content is "message is not modified". ``fail_next``
makes the next calls of a method fail (e.g. a 429 with ``retry_after``); ``push_update`` feeds
``getUpdates`` for long polling.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from switchboard.testing import FakeServer
from tests.fakes import Refusals

BOT_ID = 7000001
TOKEN = f"{BOT_ID}:AAE-fake_token_for_tests"
USERNAME = "switchboard_test_bot"
SECRET = "s3cr3t-Token_value"
MAX_TEXT = 4096
_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
                 "a", "tg-emoji", "code", "pre", "blockquote"}
_STRING_FIELDS = {"text", "parse_mode", "callback_query_id", "url", "secret_token", "action", "chat_id"}


@dataclass
class TgCall:
    method: str
    params: dict[str, Any]
    status: int


@dataclass
class TgMessage:
    chat_id: int
    message_id: int
    text: str  # visible text (entities parsed)
    parse_mode: str | None
    source: str  # what was sent, HTML included
    reply_markup: Any = None
    reply_to: int | None = None
    edits: int = 0
    deleted: bool = False


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: float | None
    count: int
    when_html: bool


@dataclass
class FakeTelegram(FakeServer):
    """The Bot API for one bot; every request is recorded in ``calls``."""

    token: str = TOKEN
    username: str = USERNAME
    calls: list[TgCall] = field(default_factory=list)
    messages: dict[tuple[int, int], TgMessage] = field(default_factory=dict)
    webhook: dict[str, Any] = field(default_factory=dict)
    #: file ids getFile refuses (as Telegram does for a file over 20 MB or a foreign file_id)
    missing_files: set[str] = field(default_factory=set)
    downloads: list[str] = field(default_factory=list)
    _faults: dict[str, list[_Fault]] = field(default_factory=dict)
    #: chats refused with 429 + ``retry_after`` for a while
    refusals: Refusals = field(default_factory=Refusals)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(500))
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _server: TestServer | None = None
    #: seconds a call waits, after it took effect, before it answers
    latency: float = 0.0

    def __post_init__(self) -> None:
        self._arrived = asyncio.Event()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    @property
    def api_base(self) -> str:
        return self.base_url()

    # -- test controls ---------------------------------------------------------------------------
    def fail_next(self, method: str, status: int = 400, description: str = "Bad Request: test fault",
                  *, retry_after: float | None = None, count: int = 1, when_html: bool = False) -> None:
        """Fail the next ``count`` calls of ``method`` (only those sending HTML if ``when_html``)."""
        self._faults.setdefault(method, []).append(_Fault(status, description, retry_after, count, when_html))

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates (long polling)."""
        self._updates.append(update)
        self._arrived.set()

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method and c.status == 200]

    def chat(self, chat_id: int) -> list[TgMessage]:
        """The bot's messages in a chat, as the user sees them now, oldest first."""
        return [m for (c, _), m in sorted(self.messages.items()) if c == chat_id and not m.deleted]

    # -- the API ---------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        if request.match_info["token"] != self.token:
            return self._answer(method, params, 401, error="Unauthorized")
        retry_after = self.refusals.check(params["chat_id"]) if "chat_id" in params else None
        if retry_after is not None:
            return self._answer(method, params, 429, error=f"Too Many Requests: retry after {retry_after:g}",
                                parameters={"retry_after": retry_after})
        fault = self._fault(method, params)
        if fault is not None:
            extra = {"parameters": {"retry_after": fault.retry_after}} if fault.retry_after else {}
            return self._answer(method, params, fault.status, error=fault.description, **extra)
        handler = getattr(self, "_m_" + method, None)
        if handler is None:
            return self._answer(method, params, 404, error="Not Found")
        try:
            result = await handler(params)
        except _ApiError as exc:
            return self._answer(method, params, 400, error=f"Bad Request: {exc}")
        if self.latency and method != "getUpdates":
            await asyncio.sleep(self.latency)
        return self._answer(method, params, 200, result=result)

    def _answer(self, method: str, params: dict[str, Any], status: int, *, result: Any = None,
                error: str | None = None, **extra: Any) -> web.Response:
        self.calls.append(TgCall(method, params, status))
        if status == 200:
            return web.json_response({"ok": True, "result": result})
        return web.json_response({"ok": False, "error_code": status, "description": error, **extra}, status=status)

    def _fault(self, method: str, params: dict[str, Any]) -> _Fault | None:
        for fault in self._faults.get(method, []):
            if fault.count > 0 and (not fault.when_html or params.get("parse_mode") == "HTML"):
                fault.count -= 1
                return fault
        return None

    async def _m_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"id": int(self.token.split(":")[0]), "is_bot": True, "first_name": "Switchboard",
                "username": self.username, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}

    async def _m_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        visible = _visible(params["text"], params.get("parse_mode"))
        reply = params.get("reply_parameters") or {}
        msg = TgMessage(chat_id, next(self._ids), visible, params.get("parse_mode"), params["text"],
                        params.get("reply_markup"), reply.get("message_id"))
        self.messages[(chat_id, msg.message_id)] = msg
        return self._message_json(msg)

    async def _m_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        msg = self._find(params)
        visible = _visible(params["text"], params.get("parse_mode"))
        markup = params.get("reply_markup")
        if (params["text"], params.get("parse_mode"), markup) == (msg.source, msg.parse_mode, msg.reply_markup):
            raise _ApiError("message is not modified: specified new message content and reply markup are "
                            "exactly the same as a current content and reply markup of the message")
        msg.text, msg.source, msg.reply_markup = visible, params["text"], markup
        msg.parse_mode = params.get("parse_mode")
        msg.edits += 1
        return self._message_json(msg)

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        msg = self._find(params)
        if params.get("reply_markup") == msg.reply_markup:
            raise _ApiError("message is not modified")
        msg.reply_markup = params.get("reply_markup")
        return self._message_json(msg)

    async def _m_deleteMessage(self, params: dict[str, Any]) -> bool:
        self._find(params).deleted = True
        return True

    async def _m_getFile(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = str(params["file_id"])
        if file_id in self.missing_files:
            raise _ApiError("invalid file_id")
        return {"file_id": file_id, "file_unique_id": "u" + file_id[-8:], "file_size": len(file_content(file_id)),
                "file_path": f"files/{urllib.parse.quote(file_id, safe='')}.bin"}

    async def _download(self, request: web.Request) -> web.Response:
        """``/file/bot<token>/<file_path>``: any file getFile described, its bytes from ``file_content``."""
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        self.downloads.append(path)
        file_id = urllib.parse.unquote(path.removeprefix("files/").removesuffix(".bin"))
        return web.Response(body=file_content(file_id), content_type="application/octet-stream")

    async def _m_sendChatAction(self, params: dict[str, Any]) -> bool:
        return True

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = dict(params)
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = {}
        return True

    async def _m_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]  # confirmed ones are gone
        if not self._updates:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(float(params.get("timeout") or 0), 1.0))
            except TimeoutError:
                return []
        return list(self._updates)

    def _find(self, params: dict[str, Any]) -> TgMessage:
        msg = self.messages.get((int(params["chat_id"]), int(params["message_id"])))
        if msg is None or msg.deleted:
            raise _ApiError("message to edit not found")
        return msg

    def _message_json(self, msg: TgMessage) -> dict[str, Any]:
        chat_type = "private" if msg.chat_id > 0 else "supergroup"
        out: dict[str, Any] = {
            "message_id": msg.message_id, "date": int(time.time()), "text": msg.text,
            "chat": {"id": msg.chat_id, "type": chat_type},
            "from": {"id": int(self.token.split(":")[0]), "is_bot": True, "first_name": "Switchboard",
                     "username": self.username},
        }
        if msg.reply_markup:
            out["reply_markup"] = msg.reply_markup
        return out


class _ApiError(Exception):
    """A 400 with Telegram's description."""


async def _params(request: web.Request) -> dict[str, Any]:
    """PTB posts form fields whose non-string values are JSON; accept JSON bodies too."""
    if request.content_type == "application/json":
        raw: dict[str, Any] = await request.json()
        return raw
    form = dict(urllib.parse.parse_qsl((await request.read()).decode(), keep_blank_values=True))
    out: dict[str, Any] = {}
    for key, value in form.items():
        if key in _STRING_FIELDS:
            out[key] = value
            continue
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _visible(text: str, parse_mode: str | None) -> str:
    """The text as Telegram displays it; raises like Telegram for bad HTML or too much text."""
    if parse_mode == "HTML":
        text = _HtmlCheck.visible_text(text)
    elif parse_mode:
        raise _ApiError(f"unsupported parse_mode {parse_mode!r} in this fake")
    if not text.strip():
        raise _ApiError("message text is empty")
    if len(text) > MAX_TEXT:
        raise _ApiError("message is too long")
    return text


class _HtmlCheck(HTMLParser):
    """Telegram's HTML rules: known tags, balanced, and only &lt; &gt; &amp; &quot; or numeric refs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.out: list[str] = []

    @classmethod
    def visible_text(cls, source: str) -> str:
        bad = re.search(r"&(?!(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)|<(?![a-zA-Z/])", source)
        if bad:
            raise _ApiError(f"can't parse entities: unexpected character at byte offset {bad.start()}")
        parser = cls()
        parser.feed(source)
        parser.close()
        if parser.stack:
            tag = parser.stack[-1]
            raise _ApiError(f"can't parse entities: can't find end tag corresponding to start tag \"{tag}\"")
        return "".join(parser.out)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS:
            raise _ApiError(f"can't parse entities: unsupported start tag \"{tag}\"")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise _ApiError(f"can't parse entities: unexpected end tag \"{tag}\"")
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.out.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.out.append(html.unescape(f"&#{name};"))



def file_content(file_id: str) -> bytes:
    """The bytes the fake serves for a file: derived from its id, so a test can check them."""
    return f"content of {file_id}".encode()


# -- what Telegram sends us --------------------------------------------------------------------------
_update_ids = itertools.count(10_000)


def user(user_id: int = 42, first_name: str = "Ada", username: str | None = "ada") -> dict[str, Any]:
    out: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
    if username:
        out["username"] = username
    return out


def text_update(text: str, *, chat_id: int = 42, user_id: int = 42, chat_type: str = "private",
                update_id: int | None = None, reply_to_bot: bool = False, message_id: int = 1) -> dict[str, Any]:
    """A ``message`` update; entities for ``@mentions`` and a leading ``/command`` are computed."""
    entities = []
    for match in re.finditer(r"(?<!\w)@\w+", text):
        entities.append({"type": "mention", "offset": _utf16(text[: match.start()]), "length": _utf16(match.group())})
    command = re.match(r"/\w+(@\w+)?", text)
    if command:
        entities.append({"type": "bot_command", "offset": 0, "length": _utf16(command.group())})
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type != "private":
        chat["title"] = "Team chat"
    message: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": chat,
                               "from": user(user_id), "text": text}
    if entities:
        message["entities"] = entities
    if reply_to_bot:
        message["reply_to_message"] = {
            "message_id": message_id - 1, "date": int(time.time()), "chat": chat, "text": "earlier answer",
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Switchboard", "username": USERNAME},
        }
    return {"update_id": next(_update_ids) if update_id is None else update_id, "message": message}


def callback_update(data: str, *, chat_id: int = 42, user_id: int = 42, message_id: int = 500,
                    update_id: int | None = None) -> dict[str, Any]:
    """A button press under the bot's message ``message_id``."""
    return {
        "update_id": next(_update_ids) if update_id is None else update_id,
        "callback_query": {
            "id": f"cq{next(_update_ids)}", "from": user(user_id), "chat_instance": "ci1", "data": data,
            "message": {"message_id": message_id, "date": int(time.time()),
                        "chat": {"id": chat_id, "type": "private"}, "text": "an answer",
                        "from": {"id": BOT_ID, "is_bot": True, "first_name": "Switchboard"}},
        },
    }


async def post_update(url: str, update: dict[str, Any], secret: str | None = SECRET) -> aiohttp.ClientResponse:
    """POST an update the way Telegram does, with the secret header (omitted when None)."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    async with aiohttp.ClientSession() as session, session.post(url, data=json.dumps(update), headers=headers) as resp:
        await resp.read()
        return resp


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
