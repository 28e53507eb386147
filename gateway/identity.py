"""Channel identities to Chatbase ``userId``s: deterministic, valid, injective, stable.

Each part is escaped so that only ``[A-Za-z0-9_]`` stays literal and every other byte becomes
``-`` plus two lower-case hex digits; parts are joined with ``.``. Because ``.`` and ``-`` never
appear unescaped inside a part, two identities never produce the same id. An id that would exceed
128 characters keeps a readable prefix and ends with ``-z`` plus a SHA-256 of the full id: ``-z``
cannot occur in an escaped id (``-`` is always followed by a hex digit), so hashed ids cannot
collide with plain ones.

An identity's ``id`` may have sub-parts separated by :data:`SUBPART` (a control character no
platform id contains): each is escaped on its own and joined with ``.``, so a verified web
visitor ``Identity("web", "site", nested_id("u", "alice"))`` is ``web.site.u.alice``. Such ids
have more dots than any plain one, so they can never equal one.
"""

from __future__ import annotations

import hashlib
import re

from gateway.events import Identity

MAX_USER_ID = 128
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
VALID_USER_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HASH_MARK = "-z"
_HASH_HEX = 40
#: separates the sub-parts of a structured identity id (see :func:`nested_id`)
SUBPART = "\x1f"


def escape_part(part: str) -> str:
    """Escape one component reversibly into ``[A-Za-z0-9_-]``."""
    return "".join(chr(b) if b in _SAFE else f"-{b:02x}" for b in part.encode("utf-8"))


def unescape_part(part: str) -> str:
    """Inverse of :func:`escape_part`."""
    out = bytearray()
    i = 0
    while i < len(part):
        if part[i] == "-":
            out.append(int(part[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(part[i]))
            i += 1
    return out.decode("utf-8")


def nested_id(*parts: str) -> str:
    """An identity id made of several parts, each escaped separately in the ``userId``."""
    if any(SUBPART in part for part in parts):
        raise ValueError("an identity id part may not contain the sub-part separator")
    return SUBPART.join(parts)


def user_id_for(identity: Identity) -> str:
    """The Chatbase ``userId`` of an identity: ``<channel-type>.<namespace>.<id>``, escaped."""
    parts = (identity.channel_type, identity.namespace, *identity.id.split(SUBPART))
    full = ".".join(escape_part(p) for p in parts)
    if len(full) <= MAX_USER_ID:
        return full
    digest = hashlib.sha256(full.encode("ascii")).hexdigest()[:_HASH_HEX]
    prefix = full[: MAX_USER_ID - len(_HASH_MARK) - _HASH_HEX]
    # Never cut an escape sequence in half: the prefix stays readable and well-formed.
    cut = prefix.rfind("-")
    if cut != -1 and cut > len(prefix) - 3:
        prefix = prefix[:cut]
    return prefix + _HASH_MARK + digest
