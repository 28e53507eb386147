"""Email threads → conversations: every message id of a thread maps to the thread's first message.

Clients trim ``References`` (some keep only ``In-Reply-To``), so the mapping is remembered for
every message we receive and every reply we send; a later mail that names any of them joins the
same conversation even when its headers no longer reach the first message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels.email.parse import ParsedMail

if TYPE_CHECKING:
    from gateway.channel import Services

#: how long a thread can be continued; past that a reply starts a new conversation anyway
THREAD_TTL = 180 * 24 * 3600.0


class ThreadIndex:
    """Message-ID → thread root, kept in the store's small values."""

    def __init__(self, services: Services, channel: str) -> None:
        # The store is looked up on use: channels are built before the store is started.
        self.services = services
        self.prefix = f"email:{channel}:thread:"

    async def root_of(self, mail: ParsedMail, fallback: str) -> str:
        """The Message-ID of the first message of ``mail``'s thread (``fallback`` if it has none)."""
        for mid in mail.thread_ids:
            root = await self.services.store.get_value(self.prefix + mid)
            if root:
                return root
        if mail.references:
            return mail.references[0]
        return mail.in_reply_to or mail.message_id or fallback

    async def remember(self, message_id: str | None, root: str) -> None:
        if message_id:
            await self.services.store.set_value(self.prefix + message_id, root, ttl=THREAD_TTL)
