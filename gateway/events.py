"""Inbound events: what a channel hands the core after it verified and parsed a webhook."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from typing import Any, Literal

#: ``notice``: something the channel says by itself, in the conversation's order and durably (a
#: greeting when a person opens a new thread); the agent is not asked
EventKind = Literal["message", "feedback", "retry", "new", "notice"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A person on one platform: ``namespace`` is the workspace/bot/page (may be empty)."""

    channel_type: str
    namespace: str
    id: str

    def key(self) -> str:
        """Stable text key of this identity, for the store."""
        return f"{self.channel_type}|{self.namespace}|{self.id}"


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One thing a user did that the gateway must answer, JSON-able so it can be journaled.

    ``key`` deduplicates platform retries (Slack ``event_id``, Twilio ``MessageSid``...);
    ``scope`` names the conversation inside the channel (thread, chat, phone number);
    ``reply`` is channel-private routing data (channel id, thread ts, chat id...).
    ``meta`` carries extras such as ``message_id`` and ``feedback`` for button events, and
    ``preface``: context the agent reads before ``text`` (which commands and handoffs see alone).
    """

    channel: str
    key: str
    identity: Identity
    scope: str
    text: str = ""
    kind: EventKind = "message"
    reply: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    received_at: float = field(default_factory=time.time)

    @property
    def journal_key(self) -> str:
        """Key unique across channel instances."""
        return f"{self.channel}:{self.key}"

    @property
    def conversation_key(self) -> str:
        """Key of the conversation this event belongs to; turns with one key run in order."""
        return f"{self.channel}:{self.scope}"

    def to_json(self) -> str:
        # Spelled out rather than dataclasses.asdict, which deep-copies every value: this runs
        # on every webhook, before the platform gets its answer.
        ident = self.identity
        return json.dumps(
            {
                "channel": self.channel,
                "key": self.key,
                "identity": {"channel_type": ident.channel_type, "namespace": ident.namespace, "id": ident.id},
                "scope": self.scope,
                "text": self.text,
                "kind": self.kind,
                "reply": self.reply,
                "meta": self.meta,
                "received_at": self.received_at,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str) -> InboundEvent:
        data = json.loads(raw)
        data["identity"] = Identity(**data["identity"])
        return cls(**data)


# to_json must name every field: fail at import if a field is added without it (a raise, not an
# assert, so the check survives ``python -O``).
if [f.name for f in fields(InboundEvent)] != [
    "channel", "key", "identity", "scope", "text", "kind", "reply", "meta", "received_at",
]:
    raise TypeError("InboundEvent.to_json is out of date")
