"""Telegram's primitives for :class:`~gateway.editing.EditingReply`.

Until the first token the typing indicator is repeated (it fades after ~5 s); then the answer is
posted once and grown with ``editMessageText``, at most once per ``edit_interval`` (Telegram allows
about one message per second per chat). The Markdown is cut into segments of at most
:data:`SEGMENT_LIMIT` characters, the visible text Telegram counts (≤ 4,096) never being longer.
Posted message ids are kept in the progress under ``messages``.

Text goes out as Telegram HTML; if Telegram cannot parse it, the same segment goes out as plain
text, so an answer is never lost to markup. An edit Telegram reports as "not modified" is fine; a
message someone deleted is posted anew. ``sendMessageDraft`` is not used: drafts are ephemeral
and would still need this same message flow for the final text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from telegram import InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ParseMode

from channels.telegram.api import TelegramBadRequest, feedback_keyboard, paced_call
from gateway.channel import Answer, Progress
from gateway.editing import EditingReply, EditLimits
from gateway.markdown import to_plain

if TYPE_CHECKING:
    from channels.telegram.channel import TelegramChannel
    from gateway.events import InboundEvent

T = TypeVar("T")

#: Markdown characters per message; the visible text Telegram counts (≤ 4,096) is never longer
SEGMENT_LIMIT = 4000


@dataclass(frozen=True, slots=True)
class TelegramContent:
    """One message: its HTML, the plain-text fallback, and the answer id its 👍/👎 buttons rate."""

    html: str
    plain: str
    rates: str | None = None


class TelegramMessages:
    """Messages in one chat (and forum topic), the first one replying to the question."""

    def __init__(self, channel: TelegramChannel, event: InboundEvent) -> None:
        self.tg = channel
        self.chat_id = int(event.reply["chat_id"])
        self.reply_to: int | None = event.reply.get("reply_to")
        self.thread_id: int | None = event.reply.get("thread_id")
        interval = channel.settings.edit_interval
        # The apology replaces a partial answer: a half sentence followed by "sorry" reads badly.
        self.limits = EditLimits(max_length=SEGMENT_LIMIT, interval=interval, spacing=interval, keep_partial=False)

    def placeholder(self) -> None:
        return None  # the typing indicator shows until the first words

    def render(self, markdown: str, answer: Answer | None) -> TelegramContent:
        rates = answer.message_id if answer is not None and self.tg.settings.feedback_buttons else None
        return TelegramContent(self.tg.render(markdown), to_plain(markdown), rates)

    async def post(self, index: int, content: TelegramContent) -> int:
        reply_to = None
        if index == 0 and self.reply_to is not None:
            reply_to = ReplyParameters(self.reply_to, allow_sending_without_reply=True)

        def request(text: str, parse_mode: str | None) -> Awaitable[Message]:
            return self.tg.bot.send_message(
                self.chat_id, text, parse_mode=parse_mode, reply_markup=_keyboard(content),
                reply_parameters=reply_to, message_thread_id=self.thread_id,
            )

        return (await self._with_fallback(request, content)).message_id

    async def edit(self, message: int, content: TelegramContent) -> bool:
        def request(text: str, parse_mode: str | None) -> Awaitable[object]:
            return self.tg.bot.edit_message_text(
                text, self.chat_id, message, parse_mode=parse_mode, reply_markup=_keyboard(content)
            )

        try:
            await self._with_fallback(request, content)
        except TelegramBadRequest as exc:
            if exc.is_not_modified:
                return True
            if exc.is_message_gone:
                return False
            raise
        return True

    async def delete(self, message: int) -> None:
        await paced_call(self.tg.pacer, self.chat_id, lambda: self.tg.bot.delete_message(self.chat_id, message))

    async def _with_fallback(self, request: Callable[[str, str | None], Awaitable[T]], content: TelegramContent) -> T:
        """Send as HTML; if Telegram cannot parse it, the same text as plain text."""
        try:
            return await paced_call(self.tg.pacer, self.chat_id, lambda: request(content.html, ParseMode.HTML))
        except TelegramBadRequest as exc:
            if not exc.is_parse_error:
                raise
            self.tg.log.warning("Telegram refused our HTML, sending plain text instead: %s", exc)
            return await paced_call(self.tg.pacer, self.chat_id, lambda: request(content.plain, None))


def _keyboard(content: TelegramContent) -> InlineKeyboardMarkup | None:
    return feedback_keyboard(content.rates) if content.rates else None


def telegram_reply(
    channel: TelegramChannel, event: InboundEvent, progress: Progress
) -> EditingReply[int, TelegramContent]:
    """Typing, then one message that grows (and continues in more when the answer is long)."""
    posted: list[int] = progress.data.setdefault("messages", [])
    return EditingReply(channel, event, progress, TelegramMessages(channel, event), posted)
