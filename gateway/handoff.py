"""Human handoff: a person from the team takes a conversation over on a support desk.

Flow: the agent calls the client action ``handoff.action`` (or the user sends a ``/human`` word)
→ :meth:`Handoff.escalate` opens a thread on the desk (who, why, ids, recent transcript) and
pauses the agent for the conversation → the user's messages are copied into the thread, and
every staff reply in the thread is delivered to the user on their own channel (the desk's channel
turns those thread messages into journaled events marked ``meta["handoff"]``, so they are
deduplicated and survive restarts like any other) → a resolve word in the thread, the admin API,
the user's ``/new`` or ``handoff.timeout`` without a staff reply hands the conversation back to
the agent. The user is told at each step. The desk is a :class:`gateway.desk.SupportDesk`: this
module never knows which platform the team works on.

Store values: ``handoff:conv:<conversation key>`` (the record), ``handoff:thread:<desk channel
name>:<place>:<thread>`` (thread → conversation key, see :func:`gateway.desk.thread_key`) and
``route:<conversation key>`` (the user's latest message without its text: where staff replies go).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gateway.agent import Page
from gateway.channel import Answer, Progress
from gateway.config import HandoffSettings
from gateway.desk import DeskThread, HandBack, SupportDesk, Ticket, TranscriptLine, thread_key
from gateway.errors import AgentError, ChannelError
from gateway.events import InboundEvent
from gateway.store import ConversationState, Store

if TYPE_CHECKING:
    from gateway.agents import Agents
    from gateway.channel import Channel

log = logging.getLogger(__name__)

__all__ = ["Handoff", "HandoffRecord", "thread_key"]
RECORD_PREFIX = "handoff:conv:"
ROUTE_PREFIX = "route:"
#: handoff values outlive any sensible timeout, but not forever if a sweep never comes
RECORD_TTL = 30 * 86400.0
#: longest single transcript message shown; the whole conversation is one link away
TRANSCRIPT_LINE = 600
STARTED_TEXT = "I've asked a person from our team to take over. They will answer here; I'll pass your messages on."
UNAVAILABLE_TEXT = "Sorry, I couldn't reach our team just now. Please try again in a little while."
NOT_HERE_TEXT = (
    "A person from our team can't join this chat, because nothing can reach you here later. "
    "Please contact us on one of our other channels (email or messaging) and ask for a person there."
)
RESOLVED_TEXT = "Our team has finished here. I'm back: ask me anything."
TIMEOUT_TEXT = "Nobody from our team could answer in time, so I'm back to help."
_USER_NOTES: dict[HandBack, str | None] = {
    "resolved": RESOLVED_TEXT, "timeout": TIMEOUT_TEXT, "admin": RESOLVED_TEXT, "new": None, "forget": None,
}


class MessageHistory(Protocol):
    """The part of the agent API handoff uses: the recent messages for the transcript."""

    async def list_messages(self, conversation_id: str, *, cursor: str | None = None, limit: int = 20) -> Page: ...


@dataclass(slots=True)
class HandoffRecord:
    """One conversation in human hands. Field names are stored as JSON: keep them."""

    conversation_key: str
    #: the desk's place (a Slack channel id) and the thread in it
    support_channel: str
    thread_ts: str
    started_at: float
    staff_at: float
    user_id: str
    conversation_id: str | None
    who: str

    @property
    def thread(self) -> DeskThread:
        return DeskThread(self.support_channel, self.thread_ts)


def transcript_lines(messages: Iterable[dict[str, Any]]) -> list[TranscriptLine]:
    """The text of list-messages items (chronological, as pages are), each trimmed to ``TRANSCRIPT_LINE``."""
    lines = []
    for message in messages:
        text = " ".join(
            str(part.get("text", ""))
            for part in message.get("parts") or []
            if isinstance(part, dict) and part.get("type") == "text"
        ).strip()
        if not text:
            continue
        if len(text) > TRANSCRIPT_LINE:
            text = text[:TRANSCRIPT_LINE] + "…"
        lines.append(TranscriptLine("user" if message.get("role") == "user" else "agent", text))
    return lines


class Handoff:
    """The handoff component; one per app."""

    def __init__(
        self,
        settings: HandoffSettings,
        *,
        desk: SupportDesk,
        store: Store,
        agents: Agents,
        channels: Mapping[str, Channel],
        agent_ids: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.desk is None:
            raise ValueError("handoff needs a desk channel")
        self.settings = settings
        self.desk = desk
        self.desk_name = settings.desk
        self.store = store
        #: each conversation's transcript comes from the agent of its channel
        self.agents = agents
        self.channels = channels
        self.agent_ids = dict(agent_ids)
        self.clock = clock
        #: handoffs this instance has seen, for the timeout sweep (others time out when next touched)
        self._known: set[str] = set()

    @property
    def action(self) -> str:
        return self.settings.action

    # -- state -----------------------------------------------------------------------------------
    async def active(self, conversation_key: str) -> HandoffRecord | None:
        raw = await self.store.get_value(RECORD_PREFIX + conversation_key)
        if raw is None:
            return None
        try:
            return HandoffRecord(**json.loads(raw))
        except (ValueError, TypeError):
            log.error("unreadable handoff record for %s; dropping it", conversation_key)
            await self.store.delete_value(RECORD_PREFIX + conversation_key)
            return None

    async def _save(self, record: HandoffRecord) -> None:
        await self.store.set_value(RECORD_PREFIX + record.conversation_key, json.dumps(asdict(record)), RECORD_TTL)
        self._known.add(record.conversation_key)

    async def _remember_route(self, event: InboundEvent) -> None:
        # The text stays out: only where to answer is needed, never what was said.
        await self.store.set_value(ROUTE_PREFIX + event.conversation_key, replace(event, text="").to_json(), RECORD_TTL)

    def _expired(self, record: HandoffRecord) -> bool:
        return self.clock() - record.staff_at > self.settings.timeout

    def _thread_key(self, record: HandoffRecord) -> str:
        return thread_key(self.desk_name, record.support_channel, record.thread_ts)

    # -- the flow --------------------------------------------------------------------------------
    def reachable(self, event: InboundEvent) -> bool:
        """Whether staff replies could reach the person later on the event's channel."""
        channel = self.channels.get(event.channel)
        return channel is None or channel.can_deliver_later

    def covers(self, event: InboundEvent) -> bool:
        """Whether the event's agent hands off here (``handoff.agent`` unset: every agent does)."""
        return self.settings.agent is None or self.agents.name_of(event.channel) == self.settings.agent

    def _ticket(self, event: InboundEvent, state: ConversationState, reason: str, summary: str) -> Ticket:
        url = None
        if state.conversation_id and self.settings.transcript_url:
            url = self.settings.transcript_url.format(
                conversation_id=state.conversation_id,
                agent_id=self.agent_ids.get(self.agents.name_of(event.channel), ""), user_id=state.user_id
            )
        return Ticket(who=f"{event.identity.id} on {event.channel}", channel=event.channel, reason=reason,
                      summary=summary, user_id=state.user_id, conversation_id=state.conversation_id,
                      transcript_url=url, resolve_words=self.settings.resolve_words)

    async def escalate(self, event: InboundEvent, state: ConversationState, *, reason: str, summary: str = "") -> bool:
        """Open a thread for the conversation and pause the agent; False when the desk failed."""
        key = event.conversation_key
        if not self.reachable(event):
            log.info("handoff declined for %s: %s cannot deliver later", key, event.channel)
            return False
        if await self.active(key) is not None:
            return True  # asked twice (or a resumed turn): one thread is enough
        ticket = self._ticket(event, state, reason, summary)
        try:
            opened = await self.desk.open_thread(self.settings.support_channel_id, ticket)
        except ChannelError as exc:
            log.error("handoff for %s failed: the desk refused the post (%s)", key, exc)
            return False
        now = self.clock()
        record = HandoffRecord(key, opened.place, opened.thread, now, now,
                               state.user_id, state.conversation_id, ticket.who)
        await self._remember_route(event)
        await self._save(record)
        await self.store.set_value(self._thread_key(record), key, RECORD_TTL)
        state.paused = True
        await self.store.put_conversation(key, state)
        await self._post_transcript(record)
        log.info("conversation handed to the team", extra={"kind": "handoff", "outcome": "started"})
        return True

    async def on_user_message(self, event: InboundEvent) -> Literal["forwarded", "handed_back", "paused"]:
        """A message in a paused conversation: copy it to the thread, or take over after the timeout."""
        record = await self.active(event.conversation_key)
        if record is None:
            return "paused"  # paused by an operator, not a handoff: nobody to forward to
        if self._expired(record):
            await self.hand_back(event.conversation_key, "timeout")
            return "handed_back"
        await self._remember_route(event)
        self._known.add(record.conversation_key)
        await self.desk.forward(record.thread, record.who, event.text)
        return "forwarded"

    async def on_staff_message(self, event: InboundEvent, progress: Progress) -> None:
        """A message in a handoff thread: hand back on a resolve word, else relay it to the user."""
        key = str(event.meta.get("handoff"))
        record = await self.active(key)
        if record is None or record.thread_ts != self.desk.thread_of(event):
            return  # the thread was closed; a late message there reaches nobody
        if " ".join(event.text.split()).lower() in self.settings.resolve_words:
            await self.hand_back(key, "resolved", by=event, progress=progress)
            return
        route = await self._route(key)
        if route is None:
            await self.desk.unreachable(record.thread)
            return
        sub = progress.data.setdefault("relay", {})

        async def save(_: dict[str, Any]) -> None:
            await progress.save()

        reply = self.channels[route.channel].open_reply(route, Progress(sub, save))
        await reply.finish(Answer(event.text))
        record.staff_at = self.clock()
        await self._save(record)
        try:
            await self.desk.delivered(record.thread, event)
        except ChannelError as exc:
            log.debug("could not mark the staff message as delivered: %s", exc)

    async def hand_back(
        self, conversation_key: str, why: HandBack, *, by: InboundEvent | None = None, progress: Progress | None = None
    ) -> bool:
        """Give the conversation back to the agent and tell both sides; False when it was not handed off."""
        record = await self.active(conversation_key)
        if record is None:
            return False
        await self.store.delete_value(self._thread_key(record))
        await self.store.delete_value(RECORD_PREFIX + conversation_key)
        self._known.discard(conversation_key)
        state = await self.store.get_conversation(conversation_key)
        if state is not None and state.paused:
            state.paused = False
            await self.store.put_conversation(conversation_key, state)
        try:
            await self.desk.handed_back(record.thread, why, by)
        except ChannelError as exc:
            log.warning("could not post to handoff thread %s: %s", record.thread_ts, exc)
        note = _USER_NOTES[why]
        route = await self._route(conversation_key)
        await self.store.delete_value(ROUTE_PREFIX + conversation_key)
        if note and route is not None:
            try:
                await self.channels[route.channel].open_reply(route, progress or Progress()).finish(Answer(note))
            except (ChannelError, KeyError) as exc:
                log.warning("could not tell %s the conversation is back with the agent: %s", conversation_key, exc)
        log.info("conversation handed back to the agent", extra={"kind": "handoff", "outcome": why})
        return True

    async def sweep(self) -> int:
        """Hand back the timed-out handoffs this instance knows of; how many."""
        count = 0
        for key in list(self._known):
            record = await self.active(key)
            if record is None:
                self._known.discard(key)
            elif self._expired(record) and await self.hand_back(key, "timeout"):
                count += 1
        return count

    async def run(self, interval: float | None = None) -> None:
        """Sweep forever (a supervised background task)."""
        interval = interval or min(max(self.settings.timeout / 4, 1.0), 30.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except (OSError, ChannelError) as exc:  # StoreUnavailable is an OSError
                log.warning("handoff sweep failed: %s", exc)

    # -- helpers ---------------------------------------------------------------------------------
    async def _route(self, conversation_key: str) -> InboundEvent | None:
        raw = await self.store.get_value(ROUTE_PREFIX + conversation_key)
        route = InboundEvent.from_json(raw) if raw else None
        return route if route is not None and route.channel in self.channels else None

    async def _post_transcript(self, record: HandoffRecord) -> None:
        if not self.settings.transcript_messages or not record.conversation_id:
            return
        lines: list[TranscriptLine] | None = None
        problem = ""
        try:
            history = self.agents.for_conversation(record.conversation_key)
            page = await history.list_messages(record.conversation_id, limit=self.settings.transcript_messages)
            lines = transcript_lines(page.items)
        except AgentError as exc:
            problem = str(exc)
        try:
            await self.desk.post_transcript(record.thread, lines, problem)
        except ChannelError as exc:
            log.warning("could not post to handoff thread %s: %s", record.thread_ts, exc)
