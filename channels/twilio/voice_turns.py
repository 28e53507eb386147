"""The answer of one voice turn as it streams in, handed out to TwiML in speakable chunks.

Twilio gives each webhook 15 seconds, while an agent answer may take longer. The turn runs in a
task that feeds a :class:`PendingAnswer`; each webhook waits a bounded time for whole sentences,
says them, and redirects to a follow-up URL while more is coming. State lives in this process,
keyed by ``CallSid`` (several instances need sticky routing for voice).
"""

from __future__ import annotations

import asyncio
import re
import time

from gateway.channel import Answer, Channel, Progress, Reply
from gateway.events import InboundEvent

#: a sentence end or a paragraph break: the places where speaking can start early
_BOUNDARY = re.compile(r"[.!?…](?=\s)|\n\s*\n")


def ready_prefix(markdown: str, final: bool) -> int:
    """Length of the longest prefix that ends at a sentence or paragraph boundary.

    A boundary inside an unclosed code fence does not count: speaking half of a code block
    and rendering the rest separately would read fence markers aloud.
    """
    if final:
        return len(markdown)
    best = 0
    for match in _BOUNDARY.finditer(markdown):
        end = match.end()
        if markdown.count("```", 0, end) % 2 == 0:
            best = end
    return best


class PendingAnswer:
    """One turn's answer: Markdown so far, whether it is complete, and how much was said."""

    def __init__(self, call_sid: str, step: int) -> None:
        self.call_sid = call_sid
        self.step = step
        self.text = ""
        self.done = False
        self.said = 0
        self.polls = 0
        self.started = time.monotonic()
        self.touched = self.started
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def finished(self) -> bool:
        """Complete, and every character of it was handed out."""
        return self.done and self.said >= len(self.text)

    def set_text(self, text: str, done: bool) -> None:
        if self.done:
            return
        self.text = text
        self.done = done
        # Wake every waiter once; later waiters get a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    def _available(self) -> int:
        return ready_prefix(self.text, self.done) - self.said

    async def wait_ready(self, budget: float) -> None:
        """Return when there is something new to say, the answer is complete, or after ``budget``."""
        deadline = time.monotonic() + budget
        while self._available() <= 0 and not self.done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return

    def take(self, limit: int) -> str:
        """The next ready Markdown chunk, at most about ``limit`` characters, cut at a boundary."""
        self.touched = time.monotonic()
        end = ready_prefix(self.text, self.done)
        if end <= self.said:
            return ""
        if end - self.said > limit:
            shorter = ready_prefix(self.text[: self.said + limit], False)
            if shorter > self.said:
                end = shorter
        chunk = self.text[self.said : end]
        self.said = end
        return chunk


class VoiceReply(Reply):
    """Collects the streamed answer into a :class:`PendingAnswer` instead of sending it."""

    def __init__(self, channel: Channel, event: InboundEvent, pending: PendingAnswer) -> None:
        super().__init__(channel, event, Progress())
        self.pending = pending

    async def update(self, text: str) -> None:
        self.pending.set_text(text, done=False)

    async def finish(self, answer: Answer) -> None:
        self.pending.set_text(answer.text, done=True)
