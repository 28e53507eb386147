"""Slack's native AI streaming (``chat.startStream`` → ``appendStream`` → ``stopStream``).

Opt-in with ``streaming = "native"``; only for answers in a thread (Slack streams only there).
Appended text cannot be taken back, so anything unusual (a resumed turn, an answer that is not an
extension of what was streamed, a stream Slack already closed) falls back to the core's
:class:`~gateway.editing.EditingReply` (:func:`slack_reply`), which rewrites the same messages with
``chat.update``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from channels.slack.api import SlackRefused
from channels.slack.blocks import actions_block
from channels.slack.reply import slack_reply
from gateway.channel import Answer, Progress, Reply
from gateway.editing import Throttle
from gateway.errors import ChannelError, ChannelRateLimited
from gateway.events import InboundEvent

if TYPE_CHECKING:
    from channels.slack.channel import SlackChannel


class NativeStreamReply(Reply):
    """Streams Markdown into Slack-rendered messages, continuing in a new one past the limit."""

    channel: SlackChannel

    def __init__(self, channel: SlackChannel, event: InboundEvent, progress: Progress) -> None:
        super().__init__(channel, event, progress)
        self.api = channel.api_for(event)
        self.target = str(event.reply["channel"])
        self.thread_ts = str(event.reply["thread_ts"])
        self.state: dict[str, Any] = progress.data.setdefault("slack", {})
        self.state["native"] = True
        #: ts of each streamed message (the same list the fallback edits)
        self.posted: list[str] = self.state.setdefault("ts", [])
        self._resumed = bool(self.posted)
        self._starts: list[int] = [0] * len(self.posted)  # answer offset where each message begins
        self._sent = ""  # the answer text appended so far
        self._latest = ""
        self._broken = self._resumed  # what a crashed run streamed is unknown: rewrite it instead
        self._lock = asyncio.Lock()
        self._throttle = Throttle(self._flush, channel.settings.update_interval, f"slack-native-{event.key}")
        self._closed = False

    async def start(self) -> None:
        if self.posted:
            return
        async with self._lock:
            await self._open(0, None)

    async def update(self, text: str) -> None:
        self._latest = text
        if not self._closed and not self._broken:
            self._throttle.poke()

    async def finish(self, answer: Answer) -> None:
        await self.close()
        async with self._lock:
            if not self._broken and answer.text.startswith(self._sent):
                try:
                    await self._append(answer.text, patient=True)
                    await self._stop(answer)
                    return
                except SlackRefused as exc:
                    self.channel.log.info("native stream refused (%s); rewriting with chat.update", exc.code)
            await self._fall_back(answer)

    async def fail(self, message: str) -> None:
        partial = self._sent.rstrip()
        await self.finish(Answer(f"{partial}\n\n{message}" if partial else message))

    async def close(self) -> None:
        self._closed = True
        await self._throttle.close()

    # -- streaming -------------------------------------------------------------------------------
    async def _flush(self) -> None:
        async with self._lock:
            if self._closed or self._broken or not self._latest.startswith(self._sent):
                return
            try:
                await self._append(self._latest, patient=False)
            except ChannelRateLimited as exc:
                self._throttle.hold(exc.retry_after)  # the text waits in _latest
                self._throttle.poke()
            except SlackRefused as exc:
                self.channel.log.info("native stream refused (%s); will rewrite at the end", exc.code)
                self._broken = True
            except ChannelError as exc:
                self.channel.log.warning("interim Slack append failed: %s", exc)

    async def _append(self, text: str, *, patient: bool) -> None:
        """Append ``text[len(sent):]``, opening a new message whenever the current one is full."""
        limit = self.channel.settings.max_message_chars
        call = self.api.call_patiently if patient else self.api.call
        while len(text) > len(self._sent):
            start = self._starts[-1]
            end = len(text)
            if end - start > limit:
                end = _cut(text, len(self._sent), start + limit)
            if end > len(self._sent):
                await call("chat.appendStream", channel=self.target, ts=self.posted[-1],
                           markdown_text=text[len(self._sent) : end])
                self._sent = text[:end]
            if end < len(text):
                await call("chat.stopStream", channel=self.target, ts=self.posted[-1])
                await self._open(end, call)

    async def _open(self, start: int, call: Any) -> None:
        result = await (call or self.api.call_patiently)(
            "chat.startStream", channel=self.target, thread_ts=self.thread_ts,
            recipient_team_id=self.event.identity.namespace or None, recipient_user_id=self.event.identity.id,
        )
        self.posted.append(str(result["ts"]))
        self._starts.append(start)
        await self.progress.save()

    async def _stop(self, answer: Answer) -> None:
        blocks = None
        if answer.message_id and self.channel.settings.buttons:
            blocks = [actions_block(answer.message_id, answer.conversation_id, self.event.scope)]
        await self.api.call_patiently("chat.stopStream", channel=self.target, ts=self.posted[-1], blocks=blocks)
        self.state["stopped"] = True
        await self.progress.save()

    async def _fall_back(self, answer: Answer) -> None:
        if not self.state.get("stopped") and self.posted:
            with contextlib.suppress(ChannelError):  # already closed by Slack is fine
                await self.api.call("chat.stopStream", channel=self.target, ts=self.posted[-1])
            self.state["stopped"] = True
        await slack_reply(self.channel, self.event, self.progress).finish(answer)


def _cut(text: str, low: int, high: int) -> int:
    """Where to end a full message: the last paragraph, line or word break in ``(low, high]``."""
    for separator in ("\n\n", "\n", ". ", " "):
        index = text.rfind(separator, low, high)
        if index > low:
            return index + len(separator)
    return high
