"""Streaming delivery into Telegram: a typing indicator, then one message that grows.

Until the first token, ``sendChatAction(typing)`` is repeated (it fades after ~5 s). Then the
answer is posted once and grown with ``editMessageText``, at most once per ``edit_interval``
(Telegram allows about one message per second per chat). The Markdown is cut into segments of
at most :data:`SEGMENT_LIMIT` characters at paragraph/sentence boundaries; a segment that is
full is final and the text continues in a new message. Every posted message id is saved in the
turn's progress before anything else happens, so a resumed turn edits instead of reposting.
A flood-control 429 during the final delivery propagates as ``ChannelRateLimited``: the core
waits ``retry_after`` and calls ``finish`` again, which continues from the saved ids.

The final text is Telegram HTML; if Telegram cannot parse it, the same segment goes out as
plain text, so an answer is never lost to markup. ``sendMessageDraft`` is not used: drafts are
ephemeral and would still need this same message flow for the final text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from telegram import InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction, ParseMode

from channels.telegram.api import TelegramBadRequest, call, feedback_keyboard
from gateway.channel import Answer, Progress, Reply
from gateway.errors import ChannelError, ChannelRateLimited
from gateway.events import InboundEvent
from gateway.text import split_text

if TYPE_CHECKING:
    from channels.telegram.channel import TelegramChannel

T = TypeVar("T")

#: Markdown characters per message; the visible text Telegram counts (≤ 4,096) is never longer
SEGMENT_LIMIT = 4000
#: seconds between typing actions (each one shows for about 5 s)
TYPING_EVERY = 4.0
#: stop the typing indicator after this long even if no text ever arrives
TYPING_MAX = 300.0


class TelegramReply(Reply):
    """One answer in one chat; see the module docstring."""

    def __init__(self, channel: TelegramChannel, event: InboundEvent, progress: Progress) -> None:
        super().__init__(channel, event, progress)
        self.tg = channel
        self._chat_id = int(event.reply["chat_id"])
        self._reply_to: int | None = event.reply.get("reply_to")
        self._thread_id: int | None = event.reply.get("thread_id")
        self._ids: list[int] = [int(i) for i in progress.data.get("messages", [])]
        #: what each message shows now (text, has keyboard): identical edits are skipped
        self._shown: dict[int, tuple[str, bool]] = {}
        self._latest = ""
        self._lock = asyncio.Lock()
        self._typing: asyncio.Task[None] | None = None
        self._preview: asyncio.Task[None] | None = None
        self._previewing = True
        self._next_edit = 0.0

    # -- the Reply protocol ------------------------------------------------------------------------
    async def start(self) -> None:
        if not self._ids:  # a resumed turn already shows text
            self._typing = asyncio.create_task(self._keep_typing(), name=f"telegram-typing-{self._chat_id}")

    async def update(self, text: str) -> None:
        if not text.strip():
            return
        self._stop_typing()
        self._latest = text
        if self._preview is None and self._previewing:
            self._preview = asyncio.create_task(self._preview_loop(), name=f"telegram-edit-{self._chat_id}")

    async def finish(self, answer: Answer) -> None:
        self._stop_typing()
        self._previewing = False
        if self._preview is not None:
            await asyncio.wait([self._preview])  # let an edit in flight land: its message id matters
        async with self._lock:
            await asyncio.sleep(max(0.0, self._next_edit - _now()))
            await self._show(answer.text, final=True, message_id=answer.message_id)

    # -- internals -----------------------------------------------------------------------------------
    async def _keep_typing(self) -> None:
        deadline = _now() + TYPING_MAX
        while _now() < deadline:
            try:
                await call(
                    self.tg.bot.send_chat_action(
                        self._chat_id, ChatAction.TYPING, message_thread_id=self._thread_id
                    )
                )
            except ChannelError as exc:
                self.tg.log.debug("typing action failed: %s", exc)
            await asyncio.sleep(TYPING_EVERY)

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None

    async def _preview_loop(self) -> None:
        """Show the newest text, then wait out the interval; stop when nothing new arrived."""
        shown = None
        while self._previewing and self._latest != shown:
            await asyncio.sleep(max(0.0, self._next_edit - _now()))
            if not self._previewing:
                break
            shown = self._latest
            try:
                async with self._lock:
                    await self._show(shown, final=False)
            except ChannelRateLimited as exc:
                self._next_edit = _now() + exc.retry_after
                shown = None  # try again once the wait is over
            except ChannelError as exc:
                # Previews are a courtesy; finish() delivers (or reports) the real answer.
                self.tg.log.warning("streaming edit failed, waiting for the final text: %s", exc)
                self._previewing = False
        self._preview = None

    async def _show(self, markdown: str, *, final: bool, message_id: str | None = None) -> None:
        segments = split_text(markdown, SEGMENT_LIMIT)
        keyboard = None
        if final and message_id and self.tg.settings.feedback_buttons:
            keyboard = feedback_keyboard(message_id)
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            complete = final or not last  # only the growing tail is still partial
            await self._put(index, segment, complete, keyboard if last else None)
        if final and len(self._ids) > len(segments):
            await self._drop_extra(len(segments))

    async def _put(
        self, index: int, segment: str, complete: bool, keyboard: InlineKeyboardMarkup | None
    ) -> None:
        from gateway.markdown import streaming_safe, to_plain

        source = segment if complete else streaming_safe(segment)
        html, plain = self.tg.render(source), to_plain(source)
        state = (html, keyboard is not None)
        if index < len(self._ids) and self._shown.get(self._ids[index]) == state:
            return
        if index < len(self._ids) and await self._edit(self._ids[index], html, plain, keyboard):
            message_id = self._ids[index]
        else:
            message_id = await self._send(html, plain, keyboard, first=index == 0)
            if index < len(self._ids):
                self._ids[index] = message_id  # the old one was deleted by someone
            else:
                self._ids.append(message_id)
            self.progress.data["messages"] = list(self._ids)
            await self.progress.save()
        self._shown[message_id] = state
        self._next_edit = _now() + self.tg.settings.edit_interval

    async def _send(self, html: str, plain: str, keyboard: InlineKeyboardMarkup | None, *, first: bool) -> int:
        reply_to = None
        if first and self._reply_to is not None:
            reply_to = ReplyParameters(self._reply_to, allow_sending_without_reply=True)

        def request(text: str, parse_mode: str | None) -> Awaitable[Message]:
            return self.tg.bot.send_message(
                self._chat_id,
                text,
                parse_mode=parse_mode,
                reply_markup=keyboard,
                reply_parameters=reply_to,
                message_thread_id=self._thread_id,
            )

        message = await self._with_fallback(request, html, plain)
        return message.message_id

    async def _edit(self, message_id: int, html: str, plain: str, keyboard: InlineKeyboardMarkup | None) -> bool:
        """Edit a posted message; False when it no longer exists (then a new one is sent)."""

        def request(text: str, parse_mode: str | None) -> Awaitable[object]:
            return self.tg.bot.edit_message_text(
                text, self._chat_id, message_id, parse_mode=parse_mode, reply_markup=keyboard
            )

        try:
            await self._with_fallback(request, html, plain)
        except TelegramBadRequest as exc:
            if exc.is_not_modified:
                return True
            if exc.is_message_gone:
                return False
            raise
        return True

    async def _with_fallback(self, request: Callable[[str, str | None], Awaitable[T]], html: str, plain: str) -> T:
        """Send as HTML; if Telegram cannot parse it, the same text as plain text."""
        try:
            return await call(request(html, ParseMode.HTML))
        except TelegramBadRequest as exc:
            if not exc.is_parse_error:
                raise
            self.tg.log.warning("Telegram refused our HTML, sending plain text instead: %s", exc)
            return await call(request(plain, None))

    async def _drop_extra(self, keep: int) -> None:
        """A resumed turn produced a shorter answer: remove the messages it no longer needs."""
        for message_id in self._ids[keep:]:
            try:
                await call(self.tg.bot.delete_message(self._chat_id, message_id))
            except ChannelError as exc:
                self.tg.log.info("could not delete a leftover message: %s", exc)
        del self._ids[keep:]
        self.progress.data["messages"] = list(self._ids)
        await self.progress.save()


def _now() -> float:
    return asyncio.get_running_loop().time()
