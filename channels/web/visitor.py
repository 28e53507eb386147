"""Who is talking on the web chat: an anonymous browser session, or a visitor the site vouched for.

A site that knows its logged-in user signs the user's id on its own server with the channel's
``identity_secret``: ``userHash = hex(HMAC-SHA256(identity_secret, userId))``, or, so that a
leaked hash expires, ``hex(HMAC-SHA256(identity_secret, f"{userId}:{ts}")) + f":{ts}"`` with
``ts`` the signing time in Unix seconds (required when ``identity_ttl`` is set).

A verified visitor is the identity ``web|<name>|u<US><userId>`` (Chatbase ``web.<name>.u.<userId>``)
and one conversation scope ``u:<userId>`` whatever browser it writes from. Anything short of a
valid signature is the browser's anonymous session: never an error, never someone else's thread;
the answer carries a notice saying so.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.events import Identity
from gateway.identity import nested_id

#: a site's user id: printable text (no control characters), at most this long
MAX_USER_ID = 256
_USER_ID = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_USER_ID}}}")
_HASH = re.compile(r"([0-9a-fA-F]{64})(?::(\d{1,12}))?")
#: a signature dated this far in the future is a site clock a little ahead, not a forgery
CLOCK_SKEW = 300.0

NOT_CONFIGURED = "I can't confirm who you are here (sign-in checks are not set up), so this chat is anonymous."
NOT_VERIFIED = ("I couldn't confirm that you're signed in, so this chat is anonymous "
                "and won't continue on your other devices.")
EXPIRED = "Your sign-in has expired, so this chat is anonymous for now; reload the page to continue as yourself."


@dataclass(frozen=True, slots=True)
class Claim:
    """The ``userId`` and ``userHash`` a browser sent (any text: checked before it counts)."""

    user_id: str
    user_hash: str


@dataclass(frozen=True, slots=True)
class Visitor:
    """The identity and conversation scope a request speaks for."""

    identity: Identity
    scope: str
    session_id: str
    verified: bool = False
    #: why a claimed identity was not accepted; said to the visitor with the answer
    notice: str | None = None


class IdentityVerifier:
    """Checks signed user ids against ``identity_secret`` (constant time), with an optional TTL."""

    def __init__(self, secret: str, ttl: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret.encode("utf-8")
        self.ttl = ttl
        self.clock = clock

    def sign(self, user_id: str, timestamp: int | None = None) -> str:
        """The ``userHash`` a site computes (used by tests and the demo page)."""
        if timestamp is None:
            return self._mac(user_id)
        return f"{self._mac(f'{user_id}:{timestamp}')}:{timestamp}"

    def check(self, claim: Claim) -> str | None:
        """None when the claim is valid, else the notice to show."""
        match = _HASH.fullmatch(claim.user_hash)
        if not _USER_ID.fullmatch(claim.user_id) or match is None:
            return NOT_VERIFIED
        given, stamp = match.group(1).lower(), match.group(2)
        signed = claim.user_id if stamp is None else f"{claim.user_id}:{stamp}"
        if not hmac.compare_digest(given.encode("ascii"), self._mac(signed).encode("ascii")):
            return NOT_VERIFIED
        if self.ttl is not None:
            if stamp is None:
                return NOT_VERIFIED  # an undated hash never expires, so it is not enough here
            age = self.clock() - int(stamp)
            if age > self.ttl:
                return EXPIRED
            if age < -CLOCK_SKEW:
                return NOT_VERIFIED
        return None

    def _mac(self, message: str) -> str:
        return hmac.new(self.secret, message.encode("utf-8"), hashlib.sha256).hexdigest()


def resolve_visitor(channel_name: str, session_id: str, claim: Claim | None,
                    verifier: IdentityVerifier | None) -> Visitor:
    """The visitor a request speaks for: verified when the claim checks out, else its session."""
    anonymous = Visitor(Identity("web", channel_name, session_id), session_id, session_id)
    if claim is None:
        return anonymous
    notice = NOT_CONFIGURED if verifier is None else verifier.check(claim)
    if notice is not None:
        return Visitor(anonymous.identity, anonymous.scope, session_id, notice=notice)
    identity = Identity("web", channel_name, nested_id("u", claim.user_id))
    # ':' never occurs in a session id, so a verified scope can never be an anonymous one.
    return Visitor(identity, "u:" + claim.user_id, session_id, verified=True)
