"""What the admin API does to the store, apart from HTTP: describe, link, pause and forget people.

Forgetting a person (a privacy request) removes, for the identity and every identity linked to
the same ``userId``: the identity records, links and link codes, every conversation state of
theirs with the journal's copy of its messages (finished event keys stay, bare, so platform
retries are still recognised), the answer→conversation map, rate-limit counters, handoff threads
and reply routing. Chatbase keeps its own copy of the conversations: the result lists their ids
so an operator can delete them there too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.agents import channel_agents
from gateway.channel import Channel
from gateway.commands import Controls
from gateway.config import DEFAULT_AGENT
from gateway.handoff import RECORD_PREFIX, ROUTE_PREFIX
from gateway.identity import SUBPART, unescape_part, user_id_for
from gateway.linking import Linker, identity_from_key, own_user_id
from gateway.store import ConversationState, IdentityRecord, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Forgotten:
    identities: list[str] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)
    agent_conversations: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)


def identity_of_user_id(user_id: str) -> str | None:
    """The identity whose own ``userId`` this is (None for hashed, over-long ids)."""
    parts = user_id.split(".")
    if len(parts) < 3 or "-z" in user_id:
        return None
    try:
        kind, namespace, *id_parts = (unescape_part(p) for p in parts)
        key = "|".join((kind, namespace, SUBPART.join(id_parts)))
    except (ValueError, UnicodeDecodeError):
        return None
    identity = identity_from_key(key)
    return key if identity is not None and user_id_for(identity) == user_id else None


class People:
    """Admin operations over identities and conversations."""

    def __init__(self, store: Store, controls: Controls, channels: Mapping[str, Channel]) -> None:
        self.store = store
        self.controls = controls
        self.channels = channels
        self.agent_names = channel_agents(controls.settings)

    @property
    def linker(self) -> Linker:
        return self.controls.linker or Linker(self.controls.settings.linking, self.store)

    async def known(self, identity_key: str) -> bool:
        """True when the gateway keeps anything about this identity."""
        if identity_from_key(identity_key) is None:
            return False
        own = own_user_id(identity_key) or ""
        return bool(
            await self.store.get_identity(identity_key)
            or await self.store.get_link(identity_key)
            or await self.store.linked_identities(own)
        )

    async def describe(self, identity_key: str, record: IdentityRecord | None = None) -> dict[str, Any]:
        identity = identity_from_key(identity_key)
        assert identity is not None
        record = record or await self.store.get_identity(identity_key)
        linked = await self.store.get_link(identity_key)
        user_id = linked or user_id_for(identity)
        sharing = set(await self.store.linked_identities(user_id))
        root = identity_of_user_id(user_id)
        if root:
            sharing.add(root)
        conversations = []
        for key, seen in sorted((record.conversations if record else {}).items()):
            conversations.append(await self.conversation(key, last_seen=seen))
        return {
            "key": identity_key,
            "channelType": identity.channel_type,
            "namespace": identity.namespace,
            "externalId": identity.id,
            "userId": user_id,
            "linked": linked is not None,
            "sameUser": sorted(sharing - {identity_key}),
            "firstSeen": record.first_seen if record else None,
            "lastSeen": record.last_seen if record else None,
            "conversations": conversations,
        }

    async def conversation(
        self, key: str, *, state: ConversationState | None = None, last_seen: float | None = None
    ) -> dict[str, Any]:
        state = state or await self.store.get_conversation(key)
        handoff = self.controls.handoff
        channel, _, scope = key.partition(":")
        return {
            "key": key,
            "channel": channel,
            "agent": self.agent_names.get(channel, DEFAULT_AGENT),
            "scope": scope,
            "conversationId": state.conversation_id if state else None,
            "userId": state.user_id if state else None,
            "paused": bool(state and state.paused),
            "handoff": bool(handoff and await handoff.active(key)),
            "updatedAt": state.updated_at if state else None,
            "lastSeen": last_seen,
        }

    async def set_paused(self, key: str, paused: bool) -> ConversationState | None:
        """Pause or resume the agent in a conversation; resuming also ends a handoff."""
        handoff = self.controls.handoff
        if not paused and handoff is not None:
            await handoff.hand_back(key, "admin")
        state = await self.store.get_conversation(key)
        if state is not None and state.paused != paused:
            state.paused = paused
            await self.store.put_conversation(key, state)
        return state

    async def link(self, identity_key: str, to_key: str) -> None:
        target = await self.linker.user_id(to_key)
        assert target is not None
        moved = await self.linker.link(identity_key, target)
        await self.controls.reset_conversations(moved)

    async def unlink(self, identity_key: str) -> bool:
        moved = await self.linker.unlink(identity_key)
        if moved is not None:
            await self.controls.reset_conversations(moved)
        return moved is not None

    async def forget(self, identity_key: str) -> Forgotten:
        """Forget the person behind ``identity_key``: see the module docstring."""
        user_id = await self.linker.user_id(identity_key) or ""
        people = {identity_key, *await self.store.linked_identities(user_id)}
        root = identity_of_user_id(user_id)
        if root:
            people.add(root)
        done = Forgotten(user_ids=sorted({user_id, *(own_user_id(k) or "" for k in people)} - {""}))
        for key in sorted(people):
            await self._forget_identity(key, done)
        log.info("forgot %d identities and %d conversations on request", len(done.identities),
                 len(done.conversations), extra={"kind": "admin", "outcome": "forgotten"})
        return done

    async def _forget_identity(self, key: str, done: Forgotten) -> None:
        record = await self.store.get_identity(key)
        handoff = self.controls.handoff
        for conversation in sorted(record.conversations if record else ()):
            state = await self.store.get_conversation(conversation)
            if state is not None and state.conversation_id:
                done.agent_conversations.append(state.conversation_id)
            if handoff is not None:
                await handoff.hand_back(conversation, "forget")
            await self.store.forget_conversation(conversation)
            await self.store.delete_values(f"msg:{conversation}:")
            for prefix in (ROUTE_PREFIX, RECORD_PREFIX):
                await self.store.delete_value(prefix + conversation)
            done.conversations.append(conversation)
        await self.store.delete_values(f"rate:{key}:")
        identity = identity_from_key(key)
        if identity is not None:
            # Channels' own per-person state (the email channel's reply cap per address).
            for channel in self.channels.values():
                await channel.forget(identity)
        await self.linker.forget(key)
        await self.store.delete_identity(key)
        self.controls.untouch(key)
        done.identities.append(key)
