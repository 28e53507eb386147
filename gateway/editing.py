"""Post-then-edit streaming, written once for every channel that can edit what it posted.

A channel supplies a :class:`MessageSurface`: how to ``post``, ``edit`` and ``delete`` one message,
how to ``render`` a piece of Markdown, an optional placeholder, and its :class:`EditLimits`.
:class:`EditingReply` owns the rest:

* a placeholder at ``start`` (or the channel's typing indicator until the first words), unless the
  answer is complete within ``quick`` seconds: then it is posted once, without placeholder or
  interim edit (crash-safe like any post: the intent to post part 0 is saved before the call, and
  a resumed turn that finds it looks the message up);
* interim edits at most once per ``interval``, newer text coalescing into one edit;
* edits that would change nothing are skipped;
* every post is announced in the progress before the platform call ("about to post message N")
  and its id appended to a list inside the progress right after, so a resumed turn edits those
  messages instead of posting the answer again; when a crash or a store outage fell between the
  two, the resumed turn asks the surface (:class:`FindsPosted`, where the platform allows) whether
  the message arrived and adopts it, so a placeholder is edited into the answer, never duplicated;
* an answer longer than ``max_length`` continues in more messages, and messages a longer interim
  split needed are deleted when the final split is shorter;
* a message that disappeared (deleted by someone) is posted anew and its id replaced; one the
  platform refuses to edit into the final answer is replaced by a new message and deleted, so a
  placeholder or a half answer is never left behind;
* rate limits: an interim edit waits for ``retry_after`` and catches up; the final delivery waits
  it out (within ``max_wait``), else the error reaches the core's delivery policy, which retries.

Every background task (typing, throttled edits) stops when the reply finishes or is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, runtime_checkable

from gateway.channel import Answer, Progress, Reply
from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited
from gateway.markdown import streaming_safe
from gateway.pacing import Scope
from gateway.text import split_text

if TYPE_CHECKING:
    from gateway.channel import Channel
    from gateway.events import InboundEvent

log = logging.getLogger(__name__)

#: a platform's message id (a Slack ``ts``, a Telegram ``message_id``)
M = TypeVar("M")
#: what one message shows, as the channel renders it; compared to skip edits that change nothing
P = TypeVar("P")
T = TypeVar("T")
M_co = TypeVar("M_co", covariant=True)

#: progress key: ids of messages a new one replaced (their edit was refused), still to delete
REPLACED = "replaced"


@dataclass(frozen=True, slots=True)
class EditLimits:
    """How a channel wants its messages grown."""

    #: Markdown characters per message; a longer answer continues in the next message
    max_length: int
    #: seconds between interim edits; text arriving in between is shown by the next one
    interval: float
    #: seconds any post or edit waits after the previous one, the final one included (per-chat pacing)
    spacing: float = 0.0
    #: on failure, keep the partial answer above the apology (else the apology replaces it)
    keep_partial: bool = True
    #: Markdown shown for an empty answer; None shows nothing (and removes what was shown)
    empty_text: str | None = None
    #: seconds between typing indicators while nothing is shown (channels without a placeholder)
    typing_every: float = 4.0
    #: stop the typing indicator after this long even if no text ever arrives
    typing_max: float = 300.0
    #: how many times the final delivery waits out a rate limit itself, and the longest wait it
    #: accepts; beyond that the error goes to the core's delivery policy
    rate_limit_attempts: int = 5
    max_wait: float = 60.0
    #: seconds an answer may take to be complete before anything is shown: a quicker answer is
    #: posted once (no placeholder, no interim post then edit); 0 shows at once
    quick: float = 0.0


#: the ``quick`` window the chat channels use (capped by their update interval): well under what a
#: person notices as a delay before "thinking…", and longer than an agent answering from cache
QUICK_ANSWER = 0.3


class MessageSurface(Protocol[M, P]):
    """The primitives a channel supplies to :class:`EditingReply`, for one conversation."""

    @property
    def limits(self) -> EditLimits: ...

    def placeholder(self) -> P | None:
        """What to show while the agent works (Slack's "thinking…"); None to show typing instead."""
        ...

    def render(self, markdown: str, answer: Answer | None) -> P:
        """One message showing ``markdown``; ``answer`` is given for the last message of the
        finished answer, to attach what belongs under it (feedback buttons)."""
        ...

    async def post(self, index: int, content: P) -> M:
        """Post the ``index``-th message of the answer; return its id."""
        ...

    async def edit(self, message: M, content: P) -> bool:
        """Show ``content`` in ``message``; False when the message no longer exists."""
        ...

    async def delete(self, message: M) -> None:
        """Remove a message the answer no longer needs."""
        ...


@runtime_checkable
class FindsPosted(Protocol[M_co]):
    """Optional for a :class:`MessageSurface`: look up a message a previous run was posting."""

    async def find(self, index: int, since: float) -> M_co | None:
        """The id of the ``index``-th message of this answer if it was posted at or after
        ``since`` (Unix time), else None."""
        ...


class Throttle:
    """Runs ``flush`` in one background task, at most once per ``interval``, coalescing pokes.

    ``hold(seconds)`` delays the next flush (a rate limit). ``close()`` stops the task and lets a
    flush already in flight land first: it may be posting a message whose id must be saved.
    """

    def __init__(self, flush: Callable[[], Awaitable[None]], interval: float, name: str) -> None:
        self._flush = flush
        self._interval = interval
        self._name = name
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: asyncio.Future[None] | None = None
        self._not_before = 0.0
        self._closed = False

    def poke(self) -> None:
        """Something new to show; flushed as soon as the interval allows."""
        if self._closed:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)
        self._dirty.set()

    def hold(self, seconds: float) -> None:
        """No flush for ``seconds`` from now."""
        self._not_before = max(self._not_before, _now() + seconds)

    async def close(self) -> None:
        """Stop for good; returns once no flush is running."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        flight = self._in_flight
        if flight is not None:
            await asyncio.wait([flight])
            if not flight.cancelled():
                flight.exception()  # retrieved: the final delivery meets the same problem and reports it

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            delay = self._not_before - _now()
            if delay > 0:
                await asyncio.sleep(delay)
            self._dirty.clear()
            self._in_flight = asyncio.ensure_future(self._flush())
            try:
                # Shielded: cancelling the loop must never cut a post in half (its id would be lost).
                await asyncio.shield(self._in_flight)
            except Exception as exc:  # the final delivery meets the same problem and reports it
                log.warning("interim update failed; the final answer will follow: %s", exc)
                return
            self.hold(self._interval)


class EditingReply(Reply, Generic[M, P]):
    """Grows an answer in messages a channel can edit; see the module docstring.

    ``ids`` is a list inside ``progress.data`` (mutated in place, so saving the progress saves it):
    the ids of the messages posted for this answer, in order, possibly from a previous run.
    """

    def __init__(
        self,
        channel: Channel,
        event: InboundEvent,
        progress: Progress,
        surface: MessageSurface[M, P],
        ids: list[M],
    ) -> None:
        super().__init__(channel, event, progress)
        self.surface = surface
        self.limits = surface.limits
        self.ids = ids
        self._shown: dict[int, P] = {}  # what each message shows now (empty on resume: edit them all)
        self._latest = ""
        self._lock = asyncio.Lock()
        self._throttle = Throttle(self._show_interim, self.limits.interval, f"editing-{event.journal_key}")
        self._typing: asyncio.Task[None] | None = None
        self._closed = False
        self._next_action = 0.0
        self._reconciled = False
        #: the deferred placeholder: a timer until its wait is over, then the task posting it
        #: (never cancelled then: a post cut in half would lose its id)
        self._placeholder_timer: asyncio.TimerHandle | None = None
        self._placeholder: asyncio.Task[None] | None = None
        self._started = 0.0

    # -- the Reply protocol ----------------------------------------------------------------------
    async def start(self) -> None:
        if self.ids:
            return  # resumed: the placeholder or a partial answer is already there
        placeholder = self.surface.placeholder()
        quick = self.limits.quick
        if quick > 0:
            self._throttle.hold(quick)  # interim text too waits to see whether the answer is quick
        if placeholder is None:
            if self._typing is None and not self._closed:
                self._typing = asyncio.create_task(self._keep_typing(), name=f"typing-{self.event.journal_key}")
            return
        if quick > 0:
            # A timer, not a task, until it is due: most quick answers never need one.
            self._started = _now()
            self._placeholder_timer = asyncio.get_running_loop().call_later(
                quick, self._placeholder_due, placeholder)
            return
        async with self._lock:
            await self._patiently(lambda: self._show([placeholder]))
        self._throttle.hold(self.limits.interval)

    def _placeholder_due(self, placeholder: P) -> None:
        self._placeholder_timer = None
        if not self._closed:
            self._placeholder = asyncio.create_task(self._post_placeholder(placeholder),
                                                    name=f"placeholder-{self.event.journal_key}")

    async def _post_placeholder(self, placeholder: P) -> None:
        """The placeholder, once the answer turned out not to be quick (unless text is showing)."""
        async with self._lock:
            if self._closed or self.ids or self._latest.strip():
                return  # finished meanwhile, or the first words are about to be shown instead
            try:
                await self._patiently(lambda: self._show([placeholder]))
            except ChannelError as exc:  # a courtesy: the final delivery reports the problem
                self.channel.log.warning("placeholder failed; the answer will follow: %s", exc)
                return
        # The first edit may come ``interval`` after the start, as with a placeholder posted at once
        # (counted from the start, not from this post: the first words must not wait for it).
        self._throttle.hold(max(0.0, self._started + self.limits.interval - _now()))

    async def update(self, text: str) -> None:
        self._latest = text
        if self._closed or not text.strip():
            return
        await self._stop_typing()
        self._throttle.poke()

    async def ready(self) -> None:
        # An answer complete before its placeholder or first edit went out is posted once: under
        # load the agent may be quick while the turn is not (queued store calls), and a placeholder
        # or interim edit then only adds platform calls.
        await self.close()

    async def finish(self, answer: Answer) -> None:
        await self.close()
        async with self._lock:
            await self._patiently(lambda: self._show(self._layout(answer.text, answer), final=True))

    async def fail(self, message: str) -> None:
        partial = self._latest.strip() if self.limits.keep_partial else ""
        await self.finish(Answer(f"{partial}\n\n{message}" if partial else message))

    async def close(self) -> None:
        """Stop typing and interim edits; an edit (or a placeholder) in flight lands first."""
        self._closed = True
        await self._stop_typing()
        if self._placeholder_timer is not None:
            self._placeholder_timer.cancel()  # still waiting: nothing posted
            self._placeholder_timer = None
        task, self._placeholder = self._placeholder, None
        if task is not None:
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: the final delivery meets the same problem and reports it
        await self._throttle.close()

    # -- interim ---------------------------------------------------------------------------------
    async def _keep_typing(self) -> None:
        deadline = _now() + self.limits.typing_max
        while _now() < deadline:
            await self.channel.typing(self.event)
            await asyncio.sleep(self.limits.typing_every)

    async def _stop_typing(self) -> None:
        task, self._typing = self._typing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _show_interim(self) -> None:
        async with self._lock:
            if self._closed:
                return
            parts = self._layout(self._latest, None)
            if not parts:
                return
            try:
                await self._show(parts)
            except ChannelRateLimited as exc:
                self._throttle.hold(exc.retry_after)  # the text waits in _latest; the next edit catches up
                self._throttle.poke()
            except ChannelPermanentError as exc:
                # Interim edits are a courtesy; the final delivery reports (or overcomes) the problem.
                self.channel.log.warning("interim edit refused, waiting for the final answer: %s", exc)
                self._closed = True
            except ChannelError as exc:
                self.channel.log.warning("interim edit failed: %s", exc)

    # -- delivery --------------------------------------------------------------------------------
    def _layout(self, markdown: str, answer: Answer | None) -> list[P]:
        """The messages that show ``markdown``: interim when ``answer`` is None, else final."""
        segments = split_text(markdown, self.limits.max_length)
        if not segments and answer is not None and self.limits.empty_text:
            segments = [self.limits.empty_text]
        parts: list[P] = []
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            if answer is None and last:
                segment = streaming_safe(segment)  # only the growing tail can end mid-construct
            parts.append(self.surface.render(segment, answer if last else None))
        return parts

    async def _show(self, parts: list[P], *, final: bool = False) -> None:
        """Make the conversation show ``parts``: edit posted messages, post the missing ones."""
        await self._reconcile()
        await asyncio.sleep(max(0.0, self._next_action - _now()))
        for index, content in enumerate(parts):
            if index >= len(self.ids):
                await self._post(index, content, final=final)
            elif self._shown.get(index) != content:
                try:
                    edited = await self.surface.edit(self.ids[index], content)
                except ChannelPermanentError as exc:
                    if not final:
                        raise
                    await self._replace(index, content, exc)
                    continue
                if edited:
                    self._shown[index] = content
                    self._paced()
                else:
                    await self._post(index, content)  # someone deleted it: post it anew
        if final and len(self.ids) > len(parts):
            await self._drop(len(parts))
        if final:
            await self._remove_replaced()

    async def _post(self, index: int, content: P, *, final: bool = False) -> None:
        """Post message ``index``, saving the intent before and its id right after: a resumed turn
        edits it, never reposts. The final delivery's id rides on its next save, or on none
        (:meth:`Progress.settled`)."""
        await self.progress.intend(index)
        message = await self.surface.post(index, content)
        self._adopt(index, message)
        self._shown[index] = content
        self._paced()
        if final:
            self.progress.settled()
        else:
            await self.progress.save()

    def _adopt(self, index: int, message: M) -> None:
        if index < len(self.ids):
            self.ids[index] = message
        else:
            self.ids.append(message)
        self.progress.sent()

    async def _reconcile(self) -> None:
        """Once per run: a post a previous run started and never recorded is looked up and adopted
        (then edited like any posted message); if it never arrived, it is posted as usual."""
        if self._reconciled:
            return
        intent = self.progress.intent()
        if intent is None:
            self._reconciled = True
            return
        if intent.part <= len(self.ids):
            if isinstance(self.surface, FindsPosted):
                message = await self.surface.find(intent.part, intent.at)
                if message is not None:
                    log.info("message %d of %s had been posted before the restart; editing it",
                             intent.part + 1, self.event.journal_key)
                    self._adopt(intent.part, message)
                    self._shown.pop(intent.part, None)
                    await self.progress.save()
                    self._reconciled = True
                    return
            else:
                self.channel.log.info("message %d of %s may have been posted before the restart; %s "
                                      "cannot tell, so it is posted again", intent.part + 1,
                                      self.event.journal_key, self.channel.type)
        self.progress.sent()
        self._reconciled = True

    async def _replace(self, index: int, content: P, refused: ChannelPermanentError) -> None:
        """The platform refuses to edit message ``index`` into the final answer (too old, locked):
        the answer goes into a new message and the old one is removed, so no placeholder or half
        answer stays behind. The old id is saved first, so a crash in between still removes it."""
        self.channel.log.warning("message %d of %s cannot be edited (%s); posting the answer anew",
                                 index + 1, self.event.journal_key, refused)
        self.progress.data.setdefault(REPLACED, []).append(self.ids[index])
        await self._post(index, content)

    async def _remove_replaced(self) -> None:
        """Delete the messages :meth:`_replace` superseded (also those of a previous run)."""
        replaced = self.progress.data.get(REPLACED)
        if not replaced:
            return
        for message in list(replaced):
            try:
                await self.surface.delete(message)
            except ChannelRateLimited:
                raise
            except ChannelPermanentError as exc:  # already gone, or the platform keeps it
                self.channel.log.info("could not remove a superseded message: %s", exc)
            replaced.remove(message)
        del self.progress.data[REPLACED]
        await self.progress.save()

    async def _drop(self, keep: int) -> None:
        """The final split is shorter than an earlier one: delete the messages no longer needed."""
        while len(self.ids) > keep:
            try:
                await self.surface.delete(self.ids[keep])
            except ChannelRateLimited:
                raise
            except ChannelPermanentError as exc:  # already gone, or too old to delete
                self.channel.log.info("could not delete a leftover message: %s", exc)
            del self.ids[keep]
            self._shown.pop(len(self.ids), None)
        await self.progress.save()

    async def _patiently(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run a visible step, waiting out rate limits the platform names (within ``max_wait``)."""
        for attempt in range(1, self.limits.rate_limit_attempts + 1):
            try:
                return await step()
            except ChannelRateLimited as exc:
                if attempt == self.limits.rate_limit_attempts or exc.retry_after > self.limits.max_wait:
                    raise
                await self._wait_out(exc)
        raise AssertionError("unreachable")

    async def _wait_out(self, limited: ChannelRateLimited) -> None:
        """Wait as long as the platform asked before trying again, with the turn's slot given back."""
        await self.progress.flush()
        scope = Scope("conversation", self.event.conversation_key, conversation=True)
        reason = f"final answer refused by the platform ({limited})"
        async with self.channel.pacer.waiting_on(scope, self.event.journal_key, reason,
                                                 until=time.time() + limited.retry_after):
            await asyncio.sleep(limited.retry_after)

    def _paced(self) -> None:
        self._next_action = _now() + self.limits.spacing


def _now() -> float:
    return asyncio.get_running_loop().time()
