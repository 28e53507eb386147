"""Turn slots (``gateway.max_concurrency``) that a turn gives back while it only waits.

The dispatcher runs each turn inside a :class:`TurnSlot`. A turn that must wait for the agent's
rate budget parks (:func:`parked`): its slot goes to another turn meanwhile, which then shows its
own waiting signal and queues for the budget in its turn, so a burst larger than
``max_concurrency`` still uses the whole budget; the parked turn takes a slot again before it
calls the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from types import TracebackType

_CURRENT: contextvars.ContextVar[TurnSlot | None] = contextvars.ContextVar("switchboard_turn_slot", default=None)


class TurnSlot:
    """One of the dispatcher's slots, held for a turn (an async context manager)."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = False
        self._token: contextvars.Token[TurnSlot | None] | None = None

    async def __aenter__(self) -> TurnSlot:
        await self._slots.acquire()
        self._held = True
        self._token = _CURRENT.set(self)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
        self._release()

    def _release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()

    async def _retake(self) -> None:
        await self._slots.acquire()  # cancelled here: not held, so exiting releases nothing
        self._held = True


@contextlib.asynccontextmanager
async def parked() -> AsyncIterator[None]:
    """Give the current turn's slot back for the duration of the block (no-op outside a turn)."""
    slot = _CURRENT.get()
    if slot is None:
        yield
        return
    slot._release()
    try:
        yield
    finally:
        await slot._retake()
