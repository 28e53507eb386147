"""Inbound activities to events: who wrote, in which conversation, and what they asked.

Rules (see docs/setup/teams.md): personal chats are always answered; in group chats and channels
only a message that @mentions the bot is, with the mention taken out of the text (Teams delivers
nothing else there unless the app has resource-specific consent). Installing the bot greets the
conversation once. Feedback comes back as ``message/submitAction`` invokes (Teams' own 👍/👎) or as
``adaptiveCard/action`` invokes (our card buttons: feedback and retry).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Literal

from microsoft_agents.activity import Activity

from gateway.events import Identity, InboundEvent

#: what an installation greeting sends the agent, so it introduces itself in its own words
GREETING_TEXT = "Hello"
THREAD_SEPARATOR = ";messageid="
_TAGS = re.compile(r"<[^>]+>")

ConversationType = Literal["personal", "groupChat", "channel"]


@dataclass(frozen=True, slots=True)
class Where:
    """Where an activity happened, and what a reply needs."""

    service_url: str
    conversation_id: str
    type: ConversationType
    tenant: str
    bot: str

    @property
    def place(self) -> str:
        """A channel's id without the thread (``19:...@thread.tacv2``)."""
        return self.conversation_id.split(THREAD_SEPARATOR, 1)[0]

    @property
    def thread(self) -> str:
        """The root message id of a channel thread ("" outside one)."""
        return self.conversation_id.partition(THREAD_SEPARATOR)[2]

    def reply(self, activity_id: str | None) -> dict[str, Any]:
        return {"service_url": self.service_url, "conversation_id": self.conversation_id, "type": self.type,
                "tenant": self.tenant, "bot": self.bot, "activity_id": activity_id, "thread": self.thread}


_KINDS: dict[str, ConversationType] = {"personal": "personal", "groupChat": "groupChat", "channel": "channel"}


def where(activity: Activity) -> Where | None:
    conversation = activity.conversation
    if conversation is None or not conversation.id or not activity.service_url or activity.recipient is None:
        return None
    kind = _KINDS.get(conversation.conversation_type or "personal")
    if kind is None:
        return None
    data = _object(activity.channel_data)
    tenant = conversation.tenant_id or str(_object(data.get("tenant")).get("id") or "")
    return Where(activity.service_url, conversation.id, kind, tenant, activity.recipient.id)


def identity(activity: Activity, at: Where) -> Identity | None:
    sender = activity.from_property
    if sender is None or not sender.id:
        return None
    return Identity("teams", at.tenant, sender.aad_object_id or sender.id)


def message_event(name: str, activity: Activity, *, addressed: bool = False) -> InboundEvent | None:
    """A message worth answering; ``addressed``: answer without a mention (a handoff thread)."""
    at = where(activity)
    if at is None or not activity.id:
        return None
    who = identity(activity, at)
    if who is None or (activity.from_property and activity.from_property.id == at.bot):
        return None
    mentioned = activity.is_recipient_mentioned() if activity.entities else False
    if at.type != "personal" and not (mentioned or addressed):
        return None
    if mentioned:
        activity.remove_recipient_mention()
    text = html.unescape(_TAGS.sub("", activity.text or "")).strip()
    if not text:
        return None
    return InboundEvent(
        channel=name,
        key=f"{at.conversation_id}|{activity.id}",
        identity=who,
        scope=at.conversation_id,
        text=text,
        reply=at.reply(activity.id),
        meta={"name": activity.from_property.name} if activity.from_property and activity.from_property.name else {},
    )


def greeting_event(name: str, activity: Activity) -> InboundEvent | None:
    """The bot was added to a conversation: one greeting turn (its key makes it once per conversation)."""
    at = where(activity)
    added = activity.members_added or []
    if at is None or not any(member.id == at.bot for member in added):
        return None
    who = identity(activity, at) or Identity("teams", at.tenant, at.conversation_id)
    return InboundEvent(channel=name, key=f"install|{at.conversation_id}", identity=who,
                        scope=at.conversation_id, text=GREETING_TEXT, reply=at.reply(None))


def feedback_loop(activity: Activity) -> tuple[str, str] | None:
    """``(answer activity id, "positive"|"negative")`` of a Teams feedback-loop invoke."""
    value = activity.value if isinstance(activity.value, dict) else {}
    action = value.get("actionValue") if value.get("actionName") == "feedback" else None
    if not isinstance(action, dict) or not activity.reply_to_id:
        return None
    reaction = {"like": "positive", "dislike": "negative"}.get(str(action.get("reaction")))
    return (activity.reply_to_id, reaction) if reaction else None


def card_action(name: str, activity: Activity, message_id: str | None = None, feedback: str | None = None
                ) -> InboundEvent | None:
    """A feedback loop vote (``message_id``/``feedback`` given) or a card button, as an event."""
    at = where(activity)
    if at is None or not activity.id:
        return None
    who = identity(activity, at)
    if who is None:
        return None
    kind: Literal["feedback", "retry"] = "feedback"
    if message_id is None:
        value = activity.value if isinstance(activity.value, dict) else {}
        action = _object(value.get("action"))
        data = _object(action.get("data"))
        verb = action.get("verb")
        message_id = str(data.get("m") or "") or None
        if verb == "retry":
            kind = "retry"
        elif verb == "feedback" and data.get("f") in ("positive", "negative"):
            feedback = str(data["f"])
        else:
            return None
        if message_id is None:
            return None
    meta: dict[str, Any] = {"message_id": message_id}
    if kind == "feedback":
        meta["feedback"] = feedback
    return InboundEvent(channel=name, key=f"{at.conversation_id}|{activity.id}", identity=who,
                        scope=at.conversation_id, kind=kind, reply=at.reply(activity.reply_to_id), meta=meta)


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
