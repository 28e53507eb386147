"""Bot API calls through python-telegram-bot, with PTB's errors mapped onto Switchboard's tree.

PTB raises ``RetryAfter``, ``BadRequest``, ``Forbidden``, ``TimedOut``/``NetworkError``...; the
core understands ``ChannelRateLimited`` (wait), ``ChannelError`` (retry with backoff) and
``ChannelPermanentError`` (give up, count). The conversion happens here, once.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)

from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited
from gateway.pacing import Pacer, Scope

T = TypeVar("T")

#: Telegram's limit on callback_data, in bytes
CALLBACK_DATA_LIMIT = 64
_FEEDBACK_PREFIX = "fb:"
_SIGNS = {"+": "positive", "-": "negative"}


class TelegramBadRequest(ChannelPermanentError):
    """A 400 from the Bot API; some of them are expected and handled by the caller."""

    @property
    def is_parse_error(self) -> bool:
        """Our HTML was refused ("can't parse entities"): resend as plain text."""
        return "can't parse entities" in str(self).lower()

    @property
    def is_not_modified(self) -> bool:
        """An edit to identical text: harmless, Telegram just reports it."""
        return "message is not modified" in str(self).lower()

    @property
    def is_message_gone(self) -> bool:
        """The message to edit was deleted (by the user, or a chat cleanup)."""
        text = str(self).lower()
        return "message to edit not found" in text or "message can't be edited" in text


async def call(request: Awaitable[T]) -> T:
    """Await one PTB request, translating its failure into the Switchboard error tree."""
    try:
        return await request
    except RetryAfter as exc:
        raise ChannelRateLimited(f"Telegram flood control: {exc.message}", retry_seconds(exc)) from exc
    except BadRequest as exc:  # a NetworkError subclass in PTB, so it must come first
        raise TelegramBadRequest(f"Telegram refused the request: {exc.message}") from exc
    except InvalidToken as exc:  # PTB's message quotes the token itself: never repeat it
        raise ChannelPermanentError("Telegram rejected the bot token") from exc
    except (Forbidden, ChatMigrated) as exc:
        # Bot blocked or kicked, group upgraded to a supergroup: retrying cannot help.
        raise ChannelPermanentError(f"Telegram refused the request: {exc.message}") from exc
    except TelegramError as exc:  # TimedOut, NetworkError (5xx, connection failures), Conflict
        raise ChannelError(f"Telegram API unavailable: {exc.message}") from exc


def chat_scopes(chat_id: int) -> list[Scope]:
    """Telegram's limits for a message in ``chat_id`` (Bot FAQ): about one per second per chat
    (short bursts tolerated), 20 per minute per group (negative chat ids), about 30 per second per
    bot. A 429's ``retry_after`` does not say which was hit: the chat is paused, the rest slowed."""
    scopes = [Scope("chat", str(chat_id), rate=1.0, burst=3.0, conversation=True)]
    if chat_id < 0:
        scopes.append(Scope("group", str(chat_id), rate=20 / 60, burst=10.0, shared=True))
    scopes.append(Scope("bot", "bot", rate=30.0, burst=30.0, shared=True))
    return scopes


async def paced_call(pacer: Pacer, chat_id: int, make: Callable[[], Awaitable[T]]) -> T:
    """:func:`call` for a message in ``chat_id``, paced in its scopes; ``make`` builds the request
    once the scopes allow it (a request built before a wait that is cancelled would never run)."""
    scopes = chat_scopes(chat_id)
    await pacer.pace(scopes, str(chat_id))
    try:
        return await call(make())
    except ChannelRateLimited as exc:
        pacer.refused(scopes, exc.retry_after, named=exc.scope, why="Telegram flood control")
        raise


def retry_seconds(exc: RetryAfter) -> float:
    """``retry_after`` in seconds, whatever type this PTB version returns."""
    with warnings.catch_warnings():
        # PTB 22 warns that the attribute will become a timedelta; we accept both already.
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def feedback_data(sign: str, message_id: str) -> str | None:
    """callback_data for a 👍/👎 button, or None when the id does not fit Telegram's 64 bytes."""
    data = f"{_FEEDBACK_PREFIX}{sign}:{message_id}"
    return data if len(data.encode("utf-8")) <= CALLBACK_DATA_LIMIT else None


def parse_feedback_data(data: str | None) -> tuple[str, str] | None:
    """``(feedback, message_id)`` from a button's callback_data, None for anything else."""
    if not data or not data.startswith(_FEEDBACK_PREFIX):
        return None
    sign, _, message_id = data[len(_FEEDBACK_PREFIX) :].partition(":")
    if sign not in _SIGNS or not message_id:
        return None
    return _SIGNS[sign], message_id


def feedback_keyboard(message_id: str, chosen: str | None = None) -> InlineKeyboardMarkup | None:
    """The 👍/👎 row under an answer; ``chosen`` marks the recorded choice (still changeable)."""
    up, down = feedback_data("+", message_id), feedback_data("-", message_id)
    if up is None or down is None:
        return None
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("👍 ✓" if chosen == "positive" else "👍", callback_data=up),
                InlineKeyboardButton("👎 ✓" if chosen == "negative" else "👎", callback_data=down),
            ]
        ]
    )
