"""Human handoff: a person from the team takes a conversation over in a Slack thread.

Flow: the agent calls the client action ``handoff.action`` (or the user sends a ``/human`` word)
→ :meth:`Handoff.escalate` opens a thread in the support channel (summary, ids, recent
transcript) and pauses the agent for the conversation → the user's messages are copied into the
thread, and every staff reply in the thread is delivered to the user on their own channel (the
Slack channel turns those thread messages into journaled events marked ``meta["handoff"]``, so
they are deduplicated and survive restarts like any other) → a resolve word in the thread, the
admin API, the user's ``/new`` or ``handoff.timeout`` without a staff reply hands the
conversation back to the agent. The user is told at each step.

Store values: ``handoff:conv:<conversation key>`` (the record), ``handoff:thread:<slack channel
name>:<channel id>:<thread ts>`` (thread → conversation key) and ``route:<conversation key>``
(the user's latest message without its text: where staff replies go).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from gateway.channel import Answer, Progress
from gateway.config import HandoffSettings
from gateway.errors import AgentError, ChannelError
from gateway.events import InboundEvent
from gateway.handoff_text import header_text, mrkdwn_escape, transcript_text
from gateway.store import ConversationState, Store
from gateway.text import split_text

if TYPE_CHECKING:
    from gateway.agent import AgentClient
    from gateway.channel import Channel

log = logging.getLogger(__name__)

RECORD_PREFIX = "handoff:conv:"
THREAD_PREFIX = "handoff:thread:"
ROUTE_PREFIX = "route:"
#: handoff values outlive any sensible timeout, but not forever if a sweep never comes
RECORD_TTL = 30 * 86400.0
STARTED_TEXT = "I've asked a person from our team to take over. They will answer here; I'll pass your messages on."
UNAVAILABLE_TEXT = "Sorry, I couldn't reach our team just now. Please try again in a little while."
NOT_HERE_TEXT = (
    "A person from our team can't join this chat, because nothing can reach you here later. "
    "Please contact us on one of our other channels (email or messaging) and ask for a person there."
)
RESOLVED_TEXT = "Our team has finished here. I'm back: ask me anything."
TIMEOUT_TEXT = "Nobody from our team could answer in time, so I'm back to help."
Why = Literal["resolved", "timeout", "admin", "new", "forget"]
_THREAD_NOTES: dict[Why, str] = {
    "resolved": ":white_check_mark: Resolved by {by}. The bot answers them again.",
    "timeout": ":hourglass: No reply from the team in time: handed back to the bot.",
    "admin": ":leftwards_arrow_with_hook: Handed back to the bot by an operator.",
    "new": ":leftwards_arrow_with_hook: They started a new conversation: handed back to the bot.",
    "forget": ":wastebasket: Their data was deleted on request; this thread no longer reaches them.",
}
_USER_NOTES: dict[Why, str | None] = {
    "resolved": RESOLVED_TEXT, "timeout": TIMEOUT_TEXT, "admin": RESOLVED_TEXT, "new": None, "forget": None,
}


class _SlackApi(Protocol):
    async def call_patiently(self, method: str, **params: Any) -> dict[str, Any]: ...


@dataclass(slots=True)
class HandoffRecord:
    """One conversation in human hands."""

    conversation_key: str
    support_channel: str
    thread_ts: str
    started_at: float
    staff_at: float
    user_id: str
    conversation_id: str | None
    who: str


def thread_key(slack_channel: str, channel_id: str, thread_ts: str) -> str:
    """The store key that tells the Slack channel a thread is a handoff thread."""
    return f"{THREAD_PREFIX}{slack_channel}:{channel_id}:{thread_ts}"


class Handoff:
    """The handoff component; one per app. The store and agent are looked up on use."""

    def __init__(
        self, settings: HandoffSettings, *, resources: Any, agent_id: str, clock: Any = time.time
    ) -> None:
        self.settings = settings
        self._resources = resources  # GatewayServices: store, agent, channels
        self.agent_id = agent_id
        self.clock = clock
        #: handoffs this instance has seen, for the timeout sweep (others time out when next touched)
        self._known: set[str] = set()

    @property
    def action(self) -> str:
        return self.settings.action

    @property
    def store(self) -> Store:
        return cast("Store", self._resources.store)

    @property
    def agent(self) -> AgentClient:
        return cast("AgentClient", self._resources.agent)

    @property
    def channels(self) -> Mapping[str, Channel]:
        return cast("Mapping[str, Channel]", self._resources.channels)

    def _desk(self) -> _SlackApi:
        api = getattr(self.channels[str(self.settings.slack_channel)], "api", None)
        if api is None:
            raise ChannelError(f"channel {self.settings.slack_channel!r} has no Slack Web API client")
        return cast(_SlackApi, api)

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

    # -- the flow --------------------------------------------------------------------------------
    def reachable(self, event: InboundEvent) -> bool:
        """Whether staff replies could reach the person later on the event's channel."""
        channel = self.channels.get(event.channel)
        return channel is None or channel.can_deliver_later

    async def escalate(self, event: InboundEvent, state: ConversationState, *, reason: str, summary: str = "") -> bool:
        """Open a thread for the conversation and pause the agent; False when Slack failed."""
        key = event.conversation_key
        if not self.reachable(event):
            log.info("handoff declined for %s: %s cannot deliver later", key, event.channel)
            return False
        if await self.active(key) is not None:
            return True  # asked twice (or a resumed turn): one thread is enough
        who = f"{event.identity.id} on {event.channel}"
        text = header_text(self.settings, who=who, channel=event.channel, reason=reason, summary=summary,
                           user_id=state.user_id, conversation_id=state.conversation_id, agent_id=self.agent_id)
        try:
            posted = await self._desk().call_patiently(
                "chat.postMessage", channel=self.settings.support_channel_id, text=text
            )
        except ChannelError as exc:
            log.error("handoff for %s failed: Slack refused the post (%s)", key, exc)
            return False
        now = self.clock()
        record = HandoffRecord(key, self.settings.support_channel_id, str(posted.get("ts", "")), now, now,
                               state.user_id, state.conversation_id, who)
        await self._remember_route(event)
        await self._save(record)
        await self.store.set_value(
            thread_key(str(self.settings.slack_channel), record.support_channel, record.thread_ts), key, RECORD_TTL
        )
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
        await self._post(record, f"*{mrkdwn_escape(record.who)}:* {mrkdwn_escape(event.text)}")
        return "forwarded"

    async def on_staff_message(self, event: InboundEvent, progress: Progress) -> None:
        """A message in a handoff thread: hand back on a resolve word, else relay it to the user."""
        key = str(event.meta.get("handoff"))
        record = await self.active(key)
        if record is None or record.thread_ts != str(event.reply.get("thread_ts")):
            return  # the thread was closed; a late message there reaches nobody
        if " ".join(event.text.split()).lower() in self.settings.resolve_words:
            await self.hand_back(key, "resolved", by=f"<@{event.identity.id}>", progress=progress)
            return
        route = await self._route(key)
        if route is None:
            await self._post(record, ":warning: I don't know where to reach them any more.")
            return
        sub = progress.data.setdefault("relay", {})

        async def save(_: dict[str, Any]) -> None:
            await progress.save()

        reply = self.channels[route.channel].open_reply(route, Progress(sub, save))
        await reply.finish(Answer(event.text))
        record.staff_at = self.clock()
        await self._save(record)
        try:
            await self._desk().call_patiently("reactions.add", channel=record.support_channel,
                                              timestamp=str(event.reply.get("ts")), name="white_check_mark")
        except ChannelError as exc:
            log.debug("could not mark the staff message as delivered: %s", exc)

    async def hand_back(
        self, conversation_key: str, why: Why, *, by: str = "", progress: Progress | None = None
    ) -> bool:
        """Give the conversation back to the agent and tell both sides; False when it was not handed off."""
        record = await self.active(conversation_key)
        if record is None:
            return False
        slack = str(self.settings.slack_channel)
        await self.store.delete_value(thread_key(slack, record.support_channel, record.thread_ts))
        await self.store.delete_value(RECORD_PREFIX + conversation_key)
        self._known.discard(conversation_key)
        state = await self.store.get_conversation(conversation_key)
        if state is not None and state.paused:
            state.paused = False
            await self.store.put_conversation(conversation_key, state)
        await self._post(record, _THREAD_NOTES[why].format(by=by or "the team"), quiet=True)
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

    # -- Slack -----------------------------------------------------------------------------------
    async def _route(self, conversation_key: str) -> InboundEvent | None:
        raw = await self.store.get_value(ROUTE_PREFIX + conversation_key)
        route = InboundEvent.from_json(raw) if raw else None
        return route if route is not None and route.channel in self.channels else None

    async def _post(self, record: HandoffRecord, text: str, *, quiet: bool = False) -> None:
        try:
            for part in split_text(text, 3900):
                await self._desk().call_patiently(
                    "chat.postMessage", channel=record.support_channel, thread_ts=record.thread_ts, text=part
                )
        except ChannelError as exc:
            if not quiet:
                raise
            log.warning("could not post to handoff thread %s: %s", record.thread_ts, exc)

    async def _post_transcript(self, record: HandoffRecord) -> None:
        if not self.settings.transcript_messages or not record.conversation_id:
            return
        try:
            page = await self.agent.list_messages(record.conversation_id, limit=self.settings.transcript_messages)
            text = transcript_text(page.items)
        except AgentError as exc:
            text = f"_(The transcript could not be loaded: {mrkdwn_escape(str(exc))})_"
        await self._post(record, text, quiet=True)
