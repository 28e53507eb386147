"""What was already delivered for one event, saved in its journal entry so a resumed turn never repeats it.

Besides what each reply keeps (parts sent, message ids, the agent's answer), every visible platform
action is announced before it happens (:meth:`Progress.intend`) and the announcement dropped once
its result is saved (:meth:`Progress.sent`): a resumed turn that finds an :class:`Intent` knows a
crash or a store outage fell inside that platform call, and asks the platform before acting again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

#: progress key of the visible action under way: ``{"part": N, "at": unix time}``, saved before
#: the platform call and removed once its result is saved (see :meth:`Progress.intend`)
SENDING = "sending"


@dataclass(frozen=True, slots=True)
class Intent:
    """An announced action ("about to send part N"), saved before the platform call; found on
    resume when a crash or a store outage fell between the call and the save of its result."""

    part: int
    at: float


class Progress:
    """What was already delivered for one event; saved to the journal so resumes never repeat."""

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        saver: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        *,
        journal_key: str | None = None,
        attempts: int = 0,
        lease: tuple[str, str, float] | None = None,
    ) -> None:
        self.data: dict[str, Any] = data if data is not None else {}
        self._saver = saver
        #: the journal entry ``saver`` writes to, for stores that save it together with other
        #: writes in one call (:func:`gateway.batched.save_answer`); None when not journaled
        self.journal_key = journal_key
        self.attempts = attempts
        #: (lease, owner, ttl) of the drain running the turn: stores that can write the progress
        #: only while that lease is the drain's (:func:`gateway.batched.journal_progress`)
        self.lease = lease
        self._unsaved = False

    async def save(self) -> None:
        self._unsaved = False
        if self._saver is not None:
            await self._saver(self.data)

    def settled(self) -> None:
        """The turn's last visible action succeeded (its result is in ``data``): forget the intent
        and leave the write to the next save, or to none.

        The finish that follows drops a finished entry's progress, so a save of its own would only
        cover a crash between the action and the finish; a resumed turn handles that as a crash
        inside the platform call (the intent is still saved) and asks the platform. A turn that
        waits instead of finishing calls :meth:`flush` first.
        """
        self.sent()
        self._unsaved = True

    async def flush(self) -> None:
        """Save a result left to later by :meth:`settled`, before anything that may take long."""
        if self._unsaved:
            await self.save()

    async def intend(self, part: int) -> None:
        """Save "about to send part ``part``" before a visible platform action.

        A turn resumed after a crash inside the platform call finds it (:meth:`intent`) and asks
        the platform whether the part arrived instead of sending it blind.
        """
        self.data[SENDING] = {"part": part, "at": time.time()}
        await self.save()

    def intent(self) -> Intent | None:
        """The action a previous run started and never recorded the result of, if any."""
        raw = self.data.get(SENDING)
        if not isinstance(raw, dict):
            return None
        return Intent(int(raw.get("part", 0)), float(raw.get("at", 0.0)))

    def sent(self) -> None:
        """The intended action's result is recorded: forget the intent (saved with the result)."""
        self.data.pop(SENDING, None)
