"""The Telegram channel: Bot API webhook (or long polling), streaming replies, feedback buttons."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
import ssl
from collections.abc import Coroutine
from typing import Any, Literal

import httpx
import pydantic
from telegram import Bot, Update
from telegram.constants import UpdateType
from telegram.request import HTTPXRequest

from channels.telegram.api import call, feedback_keyboard
from channels.telegram.reply import telegram_reply
from channels.telegram.updates import OWN_COMMANDS, BotInfo, events_from_update, fill_legacy_fields
from gateway.channel import (
    Channel,
    ChannelSettings,
    InboundRequest,
    Progress,
    Reply,
    Services,
    WebhookResult,
)
from gateway.config import CommandSettings, check_url
from gateway.errors import ChannelError, ChannelPermanentError, ConfigError, WebhookRejected
from gateway.events import InboundEvent
from gateway.media_links import MediaSource

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_TOKEN = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: the only updates the bot subscribes to
ALLOWED_UPDATES = [UpdateType.MESSAGE, UpdateType.CALLBACK_QUERY]
#: seconds that background calls (callback answers) get to finish at shutdown
SHUTDOWN_GRACE = 2.0


class _RedactBotTokens(logging.Filter):
    """PTB logs its API URLs at DEBUG ("Set Bot API URL: .../bot<token>"), and a Bot API URL
    carries the bot token: the token is cut out of the record before any handler sees it, even
    a handler set up before the configured secrets were known (``switchboard check``, start-up)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(token in text for token in self.tokens):
            for token in self.tokens:
                text = text.replace(token, "***")
            record.msg, record.args = text, ()
        return True


_REDACT_TOKENS = _RedactBotTokens()
logging.getLogger("telegram.Bot").addFilter(_REDACT_TOKENS)


class TelegramSettings(ChannelSettings):
    """``[channels.<name>]`` keys of a ``telegram`` channel."""

    bot_token: str = pydantic.Field(repr=False)
    #: what Telegram sends in X-Telegram-Bot-Api-Secret-Token (required for webhooks)
    secret_token: str | None = pydantic.Field(None, repr=False)
    api_base: str = "https://api.telegram.org"
    #: "webhook" (Telegram POSTs to us) or "polling" (we call getUpdates; no public URL needed)
    mode: Literal["webhook", "polling"] = "webhook"
    #: seconds between edits of a growing answer (Telegram: about one message per second per chat)
    edit_interval: float = pydantic.Field(1.0, ge=0.05, le=60)
    #: long-polling timeout for getUpdates, seconds
    poll_timeout: int = pydantic.Field(30, ge=0, le=50)
    #: show 👍/👎 under finished answers
    feedback_buttons: bool = True

    @pydantic.field_validator("bot_token")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _TOKEN.fullmatch(value):
            raise ValueError("expected the token from @BotFather, like 123456789:AAE...")  # never echo it
        return value

    @pydantic.field_validator("secret_token")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET.fullmatch(value):
            raise ValueError("1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @pydantic.field_validator("api_base")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value).rstrip("/")

    @pydantic.model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramSettings:
        if self.mode == "webhook" and not self.secret_token:
            raise ValueError("secret_token is required when mode = \"webhook\"")
        return self


class TelegramChannel(Channel[TelegramSettings]):
    """A Telegram bot; see docs/setup/telegram.md."""

    type = "telegram"
    Settings = TelegramSettings
    max_text_length = 4096

    def __init__(self, name: str, settings: TelegramSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        base = settings.api_base
        _REDACT_TOKENS.tokens.add(settings.bot_token)
        tls = {"verify": _tls_context()}
        self.bot = Bot(
            settings.bot_token,
            base_url=f"{base}/bot",
            base_file_url=f"{base}/file/bot",
            request=HTTPXRequest(httpx_kwargs=tls),
            # getUpdates holds the connection for poll_timeout seconds; PTB adds it to read_timeout.
            get_updates_request=HTTPXRequest(connection_pool_size=1, read_timeout=10.0, httpx_kwargs=tls),
        )
        self.me = BotInfo(id=int(settings.bot_token.split(":", 1)[0]))
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------
    async def initialize(self) -> None:
        # httpx logs every request URL at INFO, and Bot API URLs contain the bot token.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        try:
            await self._learn_username()
        except ChannelPermanentError:
            await self.bot.shutdown()
            raise ConfigError(f"channels.{self.name}.bot_token: Telegram rejected the token") from None
        except ChannelError as exc:
            # Start anyway; group mentions work once getMe succeeds (retried on the next update).
            self.log.warning("Telegram getMe failed, will retry: %s", exc)

    async def shutdown(self) -> None:
        if self._tasks:  # button answers in flight: a moment to land, then give up
            _, pending = await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self.bot.shutdown()

    async def _learn_username(self) -> None:
        if self.me.username is None:
            await call(self.bot.initialize())  # opens PTB's HTTP clients and calls getMe
            self.me = BotInfo(id=self.bot.bot.id, username=self.bot.bot.username)

    # -- inbound ---------------------------------------------------------------------------------
    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        if self.settings.mode == "polling":
            return []
        return [("setWebhook url", public_url.rstrip("/") + self.webhook_path)]

    async def verify(self, request: InboundRequest) -> None:
        expected = self.settings.secret_token
        if not expected:
            raise WebhookRejected(403, "this Telegram channel polls; its webhook is disabled")
        # The header's raw bytes: aiohttp keeps bytes that are not UTF-8 as surrogates.
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected.encode()):
            raise WebhookRejected(403, f"missing or wrong {SECRET_HEADER}")

    async def parse(self, request: InboundRequest) -> WebhookResult:
        data = request.json()
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            raise WebhookRejected(400, "not a Telegram update")
        try:
            # PTB builds objects without checking field types; odd ones surface as these errors.
            update = Update.de_json(fill_legacy_fields(data), self.bot)
            events = await self.events_for(update)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise WebhookRejected(400, f"malformed Telegram update: {type(exc).__name__}") from exc
        return WebhookResult(events=events)

    async def events_for(self, update: Update) -> list[InboundEvent]:
        """Events of one update (webhook or polling); answers button presses right away."""
        if self.me.username is None:
            try:
                await self._learn_username()
            except ChannelError as exc:
                self.log.warning("Telegram getMe failed; mentions cannot be recognised yet: %s", exc)
        if update.callback_query is not None:
            # Always answer a button press, even an unknown one, or the client shows a spinner.
            self._background(self._answer_callback(update.callback_query.id))
        settings = getattr(self.services, "settings", None)  # unit tests run channels without a core
        commands = own_commands(settings.commands) if settings is not None else OWN_COMMANDS
        return events_from_update(update, self.name, self.me, self._media_link, commands)

    def _media_link(self, file_id: str) -> str:
        return self.services.media.link(self.name, file_id)

    async def resolve_media(self, ref: str, *, stale: bool = False) -> MediaSource:
        """A ``file_id``'s download URL (``getFile``; valid an hour, and it holds the bot token)."""
        file = await call(self.bot.get_file(ref))
        if not file.file_path:
            raise ChannelPermanentError("Telegram gave no file_path for this file")
        return MediaSource(file.file_path)

    async def _answer_callback(self, query_id: str) -> None:
        try:
            await call(self.bot.answer_callback_query(query_id))
        except ChannelError as exc:
            self.log.info("answerCallbackQuery failed: %s", exc)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=f"telegram-{self.name}-bg")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def polls(self) -> bool:
        return self.settings.mode == "polling"

    async def run(self) -> None:
        """Long polling (``mode = "polling"``): getUpdates until cancelled."""
        from channels.telegram.polling import poll

        await poll(self)

    async def set_webhook(self, public_url: str) -> str:
        """Register ``<public_url>/webhooks/<name>`` with Telegram, with the secret token."""
        if not self.settings.secret_token:
            raise ConfigError(f"channels.{self.name}.secret_token: required to register a webhook")
        url = public_url.rstrip("/") + self.webhook_path
        await call(
            self.bot.set_webhook(
                url=url, secret_token=self.settings.secret_token, allowed_updates=list(ALLOWED_UPDATES)
            )
        )
        return url

    # -- outbound --------------------------------------------------------------------------------
    def render(self, markdown: str) -> str:
        from gateway.markdown import to_chat_html

        return to_chat_html(markdown)

    def open_reply(self, event: InboundEvent, progress: Progress) -> Reply:
        return telegram_reply(self, event, progress)

    async def typing(self, event: InboundEvent) -> None:
        try:
            await call(
                self.bot.send_chat_action(
                    int(event.reply["chat_id"]), "typing", message_thread_id=event.reply.get("thread_id")
                )
            )
        except ChannelError as exc:
            self.log.debug("typing action failed: %s", exc)

    async def feedback_saved(self, event: InboundEvent) -> None:
        """Mark the chosen button (it stays clickable, so the choice can be changed)."""
        keyboard = feedback_keyboard(str(event.meta["message_id"]), chosen=event.meta.get("feedback"))
        try:
            await call(
                self.bot.edit_message_reply_markup(
                    int(event.reply["chat_id"]), int(event.reply["message_id"]), reply_markup=keyboard
                )
            )
        except ChannelError as exc:
            self.log.info("could not mark the feedback button: %s", exc)

    def describe(self) -> str:
        who = f"@{self.me.username}" if self.me.username else f"bot {self.me.id}"
        return f"Telegram {who} via {self.settings.mode} ({self.settings.api_base})"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One CA-loaded TLS context for every bot: building one costs ~0.1 s of CPU each time."""
    return httpx.create_ssl_context()


def own_commands(commands: CommandSettings) -> frozenset[str]:
    """Bot-command names a group may send without mentioning us: /start and every configured word."""
    words = [w for name in type(commands).model_fields for w in getattr(commands, name)]
    return OWN_COMMANDS | {w[1:].lower() for w in words if w.startswith("/") and len(w) > 1}
