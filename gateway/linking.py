"""Cross-channel identity linking: one person on two channels becomes one Chatbase ``userId``.

A link is only ever made on explicit proof, never by guessing from names or numbers: the person
asks for a code on one channel (``/link``) and sends it from the other, or an operator links two
identities through the admin API. The code is short, single-use, expires after
``linking.code_ttl`` and is stored only as a SHA-256 hash; each identity may send
``linking.max_attempts`` wrong codes per ``code_ttl`` before it is refused.

Linking identity B to A's ``userId`` also moves the identities that were linked to B's own
``userId`` (they are the same person as B), and drops B's conversations that were opened under its
old ``userId``, because a conversation's ``userId`` is fixed when Chatbase creates it: B's next
message starts a conversation the agent files under the shared ``userId``.

Store values (so forgetting a person can find them): ``link:code:<sha256>`` (the code's owner),
``link:pending:<identity key>`` (the hash of the identity's open code), ``link:fails:<identity key>``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from gateway.config import LinkingSettings
from gateway.events import Identity
from gateway.identity import user_id_for
from gateway.store import Store

#: no 0/O, 1/I/L: codes are read off one screen and typed on another
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
#: a message that is only a code (with its dash) counts as one; anything else goes to the agent
CODE_MESSAGE = re.compile(rf"[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}", re.IGNORECASE)
CODE_PREFIX = "link:code:"
PENDING_PREFIX = "link:pending:"
FAILS_PREFIX = "link:fails:"


class LinkResult(StrEnum):
    LINKED = "linked"
    ALREADY = "already"
    OWN_CODE = "own_code"
    INVALID = "invalid"
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class Moved:
    """What a link changed: the identities now on ``user_id``, and the ``userId`` each had before."""

    user_id: str
    previous: dict[str, str]


def identity_from_key(key: str) -> Identity | None:
    """The inverse of :meth:`Identity.key` (None for text that is not one)."""
    parts = key.split("|", 2)
    if len(parts) != 3 or not parts[0] or not parts[2]:
        return None
    return Identity(*parts)


def own_user_id(identity_key: str) -> str | None:
    """The ``userId`` an identity has when it is not linked."""
    identity = identity_from_key(identity_key)
    return user_id_for(identity) if identity else None


def normalise_code(text: str) -> str:
    return re.sub(r"[\s-]", "", text).upper()


def _hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


class Linker:
    """Issues and redeems link codes and moves links; the store is looked up on use."""

    def __init__(self, settings: LinkingSettings, store: Store) -> None:
        self.settings = settings
        self.store = store

    async def user_id(self, identity_key: str) -> str | None:
        """The ``userId`` the agent knows this identity by (linked or its own)."""
        return await self.store.get_link(identity_key) or own_user_id(identity_key)

    async def issue(self, identity_key: str) -> str:
        """A fresh code for ``identity_key``; its previous open code stops working."""
        user_id = await self.user_id(identity_key)
        if user_id is None:
            raise ValueError(f"not an identity key: {identity_key!r}")
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        code = f"{code[:4]}-{code[4:]}"
        ttl = self.settings.code_ttl
        previous = await self.store.get_value(PENDING_PREFIX + identity_key)
        if previous:
            await self.store.delete_value(CODE_PREFIX + previous)
        digest = _hash(code)
        await self.store.set_value(CODE_PREFIX + digest, json.dumps({"identity": identity_key}), ttl)
        await self.store.set_value(PENDING_PREFIX + identity_key, digest, ttl)
        return code

    async def redeem(self, identity_key: str, code: str) -> tuple[LinkResult, Moved | None]:
        """Link ``identity_key`` to the owner of ``code``, if the code is valid and still open."""
        fails_key = FAILS_PREFIX + identity_key
        if int(await self.store.get_value(fails_key) or 0) >= self.settings.max_attempts:
            return LinkResult.LOCKED, None
        digest = _hash(code)
        raw = await self.store.get_value(CODE_PREFIX + digest)
        owner = _owner(raw)
        if owner is None:
            fails = await self.store.incr(fails_key, self.settings.code_ttl)
            return (LinkResult.LOCKED if fails >= self.settings.max_attempts else LinkResult.INVALID), None
        if owner == identity_key:
            return LinkResult.OWN_CODE, None
        target = await self.user_id(owner)
        await self.store.delete_value(CODE_PREFIX + digest)
        await self.store.delete_value(PENDING_PREFIX + owner)
        if target is None or target == await self.user_id(identity_key):
            return LinkResult.ALREADY, None
        return LinkResult.LINKED, await self.link(identity_key, target)

    async def link(self, identity_key: str, user_id: str) -> Moved:
        """Make ``identity_key`` (and whoever was linked to its own ``userId``) speak as ``user_id``."""
        own = own_user_id(identity_key)
        previous = {identity_key: await self.user_id(identity_key) or ""}
        if own is not None and previous[identity_key] == own:
            # B was nobody's alias: identities linked to B's own id are B's, so they come along.
            for follower in await self.store.linked_identities(own):
                previous[follower] = own
        for key in previous:
            if user_id == own_user_id(key):
                await self.store.delete_link(key)  # linking back to oneself is no link at all
            else:
                await self.store.set_link(key, user_id)
        return Moved(user_id, {k: v for k, v in previous.items() if v != user_id})

    async def unlink(self, identity_key: str) -> Moved | None:
        """Give ``identity_key`` its own ``userId`` back; None when it was not linked."""
        linked = await self.store.get_link(identity_key)
        own = own_user_id(identity_key)
        if linked is None or own is None:
            return None
        await self.store.delete_link(identity_key)
        return Moved(own, {identity_key: linked})

    async def forget(self, identity_key: str) -> None:
        """Remove the identity's open code, failure counter and link."""
        pending = await self.store.get_value(PENDING_PREFIX + identity_key)
        if pending:
            await self.store.delete_value(CODE_PREFIX + pending)
        await self.store.delete_value(PENDING_PREFIX + identity_key)
        await self.store.delete_value(FAILS_PREFIX + identity_key)
        await self.store.delete_link(identity_key)


def _owner(raw: str | None) -> str | None:
    try:
        owner = json.loads(raw)["identity"] if raw else None
    except (ValueError, KeyError, TypeError):
        return None
    return owner if isinstance(owner, str) else None
