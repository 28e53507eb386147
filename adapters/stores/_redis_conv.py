"""How the Redis store writes a conversation's state into its ``conv:`` string, and reads it back.

Compact form: ``conversation_id, user_id, last_message_id, updated_at, paused`` joined by US (0x1f),
``paused`` being ``1`` or empty, so the string ends in ``1`` exactly when paused (the REMEMBER
script reads that last character). Values that would make it ambiguous (a separator inside, an
empty string, a leading ``[`` or ``~``, a non-finite time) are written as a JSON array instead,
which starts with ``[``.

Two compact versions exist, told apart by ``updated_at``:

- v1 (written before the compact layout of issue 18): ``repr()`` of the float seconds, which always
  has a ``.``, an ``e`` or letters; ids verbatim.
- v2: whole milliseconds, digits only. A UUID id (the form of Chatbase conversation ids) is written
  as ``~`` and its 16 bytes in base64url, 23 characters instead of 36.

Issue 18 budgets 300 bytes of Redis per idle identity. With UUID ids, v2 is 90 characters where v1
was 120, which moves the string from jemalloc's 128-byte size class to the 96-byte one: its
``MEMORY USAGE`` falls from 216 to 184 bytes, leaving room for a link (see ``_redis_links``). v1
strings, still in Redis after an upgrade, are read as before and rewritten as v2 by the next put.
"""

from __future__ import annotations

import base64
import json
import re
import uuid

from gateway.store import ConversationState

_SEP = "\x1f"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MILLIS = re.compile(r"-?[0-9]+")
#: starts a compacted UUID; an id that starts with it is written as JSON
_SHORT = "~"
_SHORT_LEN = 23
#: past this (year 33658), or not finite, updated_at is written as JSON: milliseconds stay exact integers
_MAX_SECONDS = 1e12


def encode_conversation(state: ConversationState) -> str:
    """The v2 compact form, or JSON when a value would make it ambiguous.

    ``updated_at`` is kept to the millisecond (it is compared with TTLs of hours to days).
    """
    ids = (state.conversation_id, state.user_id, state.last_message_id)
    if (
        all(f is None or (f and _SEP not in f and not f.startswith(_SHORT)) for f in ids)
        and not (state.conversation_id or "").startswith("[")
        and abs(state.updated_at) < _MAX_SECONDS  # also false for NaN
    ):
        cid, uid, mid = (_short(f) for f in ids)
        millis = str(round(state.updated_at * 1000))
        return _SEP.join((cid, uid, mid, millis, "1" if state.paused else ""))
    return json.dumps([*ids, state.updated_at, state.paused], ensure_ascii=False)


def decode_conversation(raw: str) -> ConversationState:
    """Any form ever written: JSON, compact v1 or compact v2."""
    if raw.startswith("["):
        cid, uid, mid, updated_at, paused = json.loads(raw)
        return ConversationState(cid, uid, mid, updated_at, bool(paused))
    cid, uid, mid, updated_at, paused = raw.split(_SEP)
    if _MILLIS.fullmatch(updated_at):  # v2
        cid, uid, mid = _long(cid), _long(uid), _long(mid)
        at = int(updated_at) / 1000
    else:  # v1: ids verbatim (even one starting with "~"), seconds as repr()
        at = float(updated_at)
    return ConversationState(cid or None, uid, mid or None, at, paused == "1")


def _short(value: str | None) -> str:
    if value is None:
        return ""
    if _UUID.fullmatch(value):
        return _SHORT + base64.urlsafe_b64encode(uuid.UUID(value).bytes).decode().rstrip("=")
    return value


def _long(value: str) -> str:
    if len(value) == _SHORT_LEN and value.startswith(_SHORT):
        return str(uuid.UUID(bytes=base64.urlsafe_b64decode(value[1:] + "==")))
    return value
