"""Slack's AI app container: assistant threads, their context, greeting and suggested prompts.

When someone opens the container (or starts a new chat in it) Slack sends
``assistant_thread_started`` with the DM channel and thread of the new chat and the channel the
person is viewing; ``assistant_thread_context_changed`` follows as they move around. Each
assistant thread is its own conversation. Its record in the store (``slack:<name>:assistant:
<user>:<channel>:<thread_ts>``) says it is one, keeps the latest context, and whether it was
titled; forgetting the person deletes their records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gateway.events import Identity, InboundEvent

if TYPE_CHECKING:
    from channels.slack.settings import AssistantSettings
    from gateway.store import KeyValueStore

#: a thread's title: the first question, cut at a word near this length
TITLE_LENGTH = 60
EVENTS = frozenset({"assistant_thread_started", "assistant_thread_context_changed"})


@dataclass(slots=True)
class AssistantThread:
    """What we keep about one assistant thread."""

    user: str = ""
    #: the channel the person is viewing (``channel_id``, ``team_id``, ``enterprise_id``)
    context: dict[str, str] = field(default_factory=dict)
    titled: bool = False

    def to_json(self) -> str:
        return json.dumps({"user": self.user, "context": self.context, "titled": self.titled})

    @classmethod
    def from_json(cls, raw: str) -> AssistantThread:
        try:
            data = json.loads(raw)
            return cls(str(data.get("user", "")), _context(data.get("context")), bool(data.get("titled")))
        except (ValueError, AttributeError):
            return cls()  # a damaged record still marks an assistant thread


class AssistantThreads:
    """Records of the assistant threads of one Slack channel instance."""

    def __init__(self, name: str, settings: AssistantSettings, store: KeyValueStore, ttl: float) -> None:
        self.name = name
        self.settings = settings
        self.store = store
        self.ttl = ttl

    def _key(self, user: str, channel: str, thread_ts: str) -> str:
        return f"{self._prefix(user)}{channel}:{thread_ts}"

    def _prefix(self, user: str) -> str:
        return f"slack:{self.name}:assistant:{user}:"

    async def get(self, user: str, channel: str, thread_ts: str) -> AssistantThread | None:
        """The record of ``user``'s assistant thread (None: not an assistant thread of theirs)."""
        raw = await self.store.get_value(self._key(user, channel, thread_ts))
        return None if raw is None else AssistantThread.from_json(raw)

    async def put(self, user: str, channel: str, thread_ts: str, thread: AssistantThread) -> None:
        # Kept as long as a conversation is: an idle thread later is a fresh conversation anyway.
        await self.store.set_value(self._key(user, channel, thread_ts), thread.to_json(), self.ttl)

    async def forget(self, user: str) -> None:
        """Delete every assistant thread record of ``user`` (the context they viewed included)."""
        await self.store.delete_values(self._prefix(user))

    async def on_event(self, envelope: dict[str, Any], event: dict[str, Any], team: str,
                       extra_reply: dict[str, Any]) -> list[InboundEvent]:
        """Record a started thread or its new context; a started one gets the greeting (a notice)."""
        thread = event.get("assistant_thread")
        if not isinstance(thread, dict):
            return []
        channel, thread_ts = str(thread.get("channel_id") or ""), str(thread.get("thread_ts") or "")
        user = str(thread.get("user_id") or "")
        if not channel or not thread_ts or not user:
            return []
        record = await self.get(user, channel, thread_ts) or AssistantThread(user=user)
        record.context = _context(thread.get("context")) or record.context
        await self.put(user, channel, thread_ts, record)
        started = event.get("type") == "assistant_thread_started"
        if not started or not (self.settings.greeting or self.settings.prompts):
            return []
        return [InboundEvent(
            channel=self.name,
            key=str(envelope.get("event_id") or f"assistant:{channel}:{thread_ts}"),
            identity=Identity("slack", team, user),
            scope=f"{channel}:{thread_ts}",
            text=self.settings.greeting,
            kind="notice",
            reply={"channel": channel, "thread_ts": thread_ts, "assistant": True, **extra_reply},
            meta={"assistant": "greeting"},
        )]

    async def question(self, event: InboundEvent, thread: AssistantThread) -> InboundEvent:
        """A question asked in an assistant thread: its context, the preface, and a title if it is the first."""
        channel, thread_ts = str(event.reply["channel"]), str(event.reply["thread_ts"])
        meta = {**event.meta, "assistant_context": thread.context}
        if self.settings.set_title and not thread.titled:
            meta["assistant_title"] = title_of(event.text)
            thread.titled = True
        await self.put(event.identity.id, channel, thread_ts, thread)
        if self.settings.context_preface and thread.context.get("channel_id"):
            meta["preface"] = preface(thread.context)  # for the agent only: "/new" stays a command
        return replace(event, reply={**event.reply, "assistant": True}, meta=meta)


def preface(context: dict[str, str]) -> str:
    """The line the agent reads before the question when ``context_preface`` is on."""
    return f"[Context: the person is viewing the Slack channel {context['channel_id']}.]"


def title_of(question: str) -> str:
    """A thread title from its first question: one line, cut at a word."""
    line = " ".join(question.split())
    if len(line) <= TITLE_LENGTH:
        return line
    cut = line.rfind(" ", 0, TITLE_LENGTH)
    return line[: cut if cut > TITLE_LENGTH // 2 else TITLE_LENGTH].rstrip(" ,.;:") + "…"


def _context(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: str(value[k]) for k in ("channel_id", "team_id", "enterprise_id") if value.get(k)}
