"""A streaming answer in Slack: a placeholder that grows with throttled ``chat.update`` calls.

Every ``ts`` posted for the answer is saved in the turn's progress before anything else happens,
so a turn resumed after a crash edits those messages instead of posting the answer again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from channels.slack.blocks import answer_blocks
from gateway import markdown
from gateway.channel import Answer, Progress, Reply
from gateway.errors import ChannelError, ChannelRateLimited
from gateway.events import InboundEvent

if TYPE_CHECKING:
    from channels.slack.channel import SlackChannel

#: what Slack is given when an answer came back empty (it refuses empty messages)
EMPTY_ANSWER = "_(no answer)_"


class SlackReply(Reply):
    """Grows one message (and continues in more of the thread when it gets long)."""

    channel: SlackChannel

    def __init__(self, channel: SlackChannel, event: InboundEvent, progress: Progress) -> None:
        super().__init__(channel, event, progress)
        self.api = channel.api
        self.target = str(event.reply["channel"])
        self.thread_ts: str | None = event.reply.get("thread_ts")
        state = progress.data.setdefault("slack", {})
        self.posted: list[str] = state.setdefault("ts", [])
        self._latest = ""
        # What each message shows now, so unchanged ones are not edited again (empty on resume).
        self._shown: dict[int, tuple[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._next_edit = 0.0

    async def start(self) -> None:
        if self.posted:
            return  # resumed: the placeholder or a partial answer is already there
        async with self._lock:
            await self._post(0, self.channel.settings.thinking_text, None, patient=True)
        self._next_edit = time.monotonic() + self.channel.settings.update_interval

    async def update(self, text: str) -> None:
        self._latest = text
        if self._closed:
            return
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name=f"slack-stream-{self.event.key}")
        self._dirty.set()

    async def finish(self, answer: Answer) -> None:
        await self._close()
        async with self._lock:
            rendered = self.channel.render(answer.text) or EMPTY_ANSWER
            parts = self.channel.split(rendered) or [EMPTY_ANSWER]
            await self._show(parts, answer)

    async def fail(self, message: str) -> None:
        # Keep what the user already read and say why it stops there.
        partial = self._latest.strip()
        await self.finish(Answer(text=f"{partial}\n\n{message}" if partial else message))

    # -- streaming -------------------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        interval = self.channel.settings.update_interval
        while True:
            await self._dirty.wait()
            delay = max(self._next_edit - time.monotonic(), self.api.blocked_for("chat.update"))
            if delay > 0:
                await asyncio.sleep(delay)
            self._dirty.clear()
            # Shielded: cancelling the loop must never cut a post in half (its ts would be lost).
            await asyncio.shield(self._show_partial())
            self._next_edit = time.monotonic() + interval

    async def _show_partial(self) -> None:
        async with self._lock:
            if self._closed:
                return
            parts = self.channel.split(markdown.to_mrkdwn(markdown.streaming_safe(self._latest)))
            if not parts:
                return
            try:
                await self._show(parts, None)
            except ChannelRateLimited:
                pass  # the API client parks chat.update until Retry-After; the next edit catches up
            except ChannelError as exc:
                # The final edit delivers everything; a failed intermediate edit only delays it.
                self.channel.log.warning("interim Slack edit failed: %s", exc)

    async def _close(self) -> None:
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    # -- delivery --------------------------------------------------------------------------------
    async def _show(self, parts: list[str], answer: Answer | None) -> None:
        """Make the thread show ``parts``: edit posted messages, post the missing ones."""
        final = answer is not None
        # Buttons need the assistant message id; apologies and interim renders have none.
        message_id = answer.message_id if answer is not None and self.channel.settings.buttons else None
        for index, part in enumerate(parts):
            blocks = None
            if message_id and answer is not None and index == len(parts) - 1:
                blocks = answer_blocks(part, message_id, answer.conversation_id, self.event.scope)
            if index < len(self.posted):
                if self._shown.get(index) != (part, blocks):
                    await self._edit(index, part, blocks, patient=final)
            else:
                await self._post(index, part, blocks, patient=final)
        if final and len(self.posted) > len(parts):
            # The final split can be shorter than an interim one: remove the leftovers.
            for ts in self.posted[len(parts) :]:
                await self.api.call_patiently("chat.delete", channel=self.target, ts=ts)
            del self.posted[len(parts) :]
            await self.progress.save()

    async def _post(self, index: int, text: str, blocks: Any, *, patient: bool) -> None:
        call = self.api.call_patiently if patient else self.api.call
        result = await call(
            "chat.postMessage",
            channel=self.target,
            thread_ts=self.thread_ts,
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        self.posted.append(str(result["ts"]))
        self._shown[index] = (text, blocks)
        await self.progress.save()

    async def _edit(self, index: int, text: str, blocks: Any, *, patient: bool) -> None:
        call = self.api.call_patiently if patient else self.api.call
        # An empty list removes blocks a previous edit added; None would leave them.
        await call("chat.update", channel=self.target, ts=self.posted[index], text=text, blocks=blocks or [])
        self._shown[index] = (text, blocks)
