"""The answer as a Vercel AI SDK UI message stream, written straight to the browser.

Events, one ``data: {json}`` line and a blank line each: ``start``, ``text-start``,
``text-delta``... ``text-end``, ``finish`` (with ``messageMetadata``), then ``data: [DONE]``.
The AI SDK validates chunks with strict schemas, so only documented keys are sent (``finish``
carries no ``finishReason``: older SDK releases reject it; the metadata is free-form).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from gateway.channel import Answer, Channel, Progress, Reply
from gateway.events import InboundEvent

log = logging.getLogger(__name__)

STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "x-vercel-ai-ui-message-stream": "v1",
    # Reverse proxies (nginx) would otherwise hold the answer back until it is complete.
    "X-Accel-Buffering": "no",
}


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``event`` as compact JSON."""
    return b"data: " + json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


class SseSink:
    """Writes events to an open response; a browser that went away is not an error."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.gone = False

    async def write(self, chunk: bytes) -> None:
        if self.gone:
            return
        try:
            await self.response.write(chunk)
        except (ConnectionError, RuntimeError):
            # The turn still runs to its end, so the agent's conversation stays consistent for
            # the session's next message; there is just nobody left to show this one to.
            self.gone = True
            log.info("web chat client disconnected before the answer ended")

    async def write_eof(self) -> None:
        if not self.gone:
            try:
                await self.response.write_eof()
            except (ConnectionError, RuntimeError):
                self.gone = True


class StreamReply(Reply):
    """Streams one answer as UI-message-stream events into an open HTTP response."""

    def __init__(
        self,
        channel: Channel,
        event: InboundEvent,
        progress: Progress,
        sink: SseSink,
        message_id: str,
        notice: str | None = None,
    ) -> None:
        super().__init__(channel, event, progress)
        self.sink = sink
        self.message_id = message_id
        #: said before the answer, as its own text part (e.g. "this chat is anonymous")
        self.notice = notice
        self.done = False
        self._sent = ""
        self._part = 0
        self._open = False

    async def begin(self) -> None:
        """Announce the message; sent before the agent is called so the browser sees life at once."""
        await self.sink.write(sse({"type": "start", "messageId": self.message_id}))
        if self.notice:
            await self._start_part()
            await self.sink.write(sse({"type": "text-delta", "id": self._part_id, "delta": self.notice}))
            await self._end_part()

    async def update(self, text: str) -> None:
        if not self.done:
            await self._emit(text)

    async def finish(self, answer: Answer) -> None:
        if self.done:
            return
        await self._emit(answer.text)
        await self._close({"conversationId": answer.conversation_id, "messageId": answer.message_id})

    async def fail(self, message: str) -> None:
        if self.done:
            return
        # Whatever already streamed stays on screen; the apology follows it as text so every
        # client shows it (an AI SDK ``error`` chunk would hide it behind the client's error UI).
        await self._emit(f"{self._sent}\n\n{message}" if self._sent else message)
        await self._close({"error": True})

    async def _emit(self, text: str) -> None:
        if not self._open:
            await self._start_part()
        if text.startswith(self._sent):
            delta = text[len(self._sent):]
        else:
            # The contract says text only grows; if it ever does not, deltas cannot take back
            # what was shown, so the new text goes out whole as a fresh text part.
            log.warning("web chat answer text was rewritten; sending it as a new part")
            await self._end_part()
            await self._start_part()
            delta = text
        self._sent = text
        if delta:
            await self.sink.write(sse({"type": "text-delta", "id": self._part_id, "delta": delta}))

    @property
    def _part_id(self) -> str:
        return f"{self.message_id}-t{self._part}"

    async def _start_part(self) -> None:
        self._part += 1
        self._open = True
        await self.sink.write(sse({"type": "text-start", "id": self._part_id}))

    async def _end_part(self) -> None:
        if self._open:
            self._open = False
            await self.sink.write(sse({"type": "text-end", "id": self._part_id}))

    async def _close(self, metadata: dict[str, Any]) -> None:
        self.done = True
        if not self._open and not self._part:
            await self._start_part()
        await self._end_part()
        meta = {k: v for k, v in metadata.items() if v is not None}
        # The browser's own session id: a verified visitor's scope is their user, not the session.
        meta["sessionId"] = self.event.reply.get("session", self.event.scope)
        if self.event.reply.get("verified"):
            meta["verified"] = True
        if self.notice:
            meta["identityNotice"] = self.notice
        await self.sink.write(sse({"type": "finish", "messageMetadata": meta}))
        await self.sink.write(DONE)
