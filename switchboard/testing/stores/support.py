"""What every store contract shares: how a store under test is opened, and sample events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pytest
import pytest_asyncio

from gateway.events import Identity, InboundEvent
from gateway.store import JournalEntry, JournalStore

S = TypeVar("S")


@dataclass
class StoreOpener(Generic[S]):
    """Opens (and later closes) stores made by ``create`` on ``url``.

    ``create`` is the store's ``switchboard.stores`` entry point (or any callable taking a URL).
    ``shared``: two stores opened on the URL see each other's data, as two gateway instances do.
    ``durable``: what one store wrote is still there for a store opened after it was closed.
    Options such as ``dedup_ttl=0.2`` are appended to the URL's query, which every store understands.
    """

    create: Callable[[str], S]
    url: str
    shared: bool = True
    durable: bool = True
    opened: list[S] = field(default_factory=list)

    async def __call__(self, options: str = "") -> S:
        """A new, initialized store on the URL (plus ``options``)."""
        url = self.url + (("&" if "?" in self.url else "?") + options if options else "")
        store = self.create(url)
        initialize = getattr(store, "initialize", None)
        if initialize is not None:
            await initialize()
        self.opened.append(store)
        return store

    async def reopen(self, store: S) -> S:
        """What a restarted gateway gets: the store closed, and a new one on the same URL."""
        await _close(store)
        self.opened.remove(store)
        return await self()

    async def instances(self, store: S) -> list[S]:
        """Two stores as two gateway instances see them (the same one twice unless ``shared``)."""
        return [store, await self() if self.shared else store]

    async def close_all(self) -> None:
        while self.opened:
            await _close(self.opened.pop())


async def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        await close()


@pytest.mark.asyncio
class ContractBase:
    """Base of the contract suites: a subclass provides the ``opener`` fixture, and inherits the tests.

    ``store`` is a fresh store from the opener; everything the opener opened is closed afterwards.
    The data must start empty: flush it in the ``opener`` fixture when the store is a server.
    """

    @pytest.fixture
    def opener(self) -> StoreOpener[Any]:
        raise NotImplementedError("define an `opener` fixture returning a switchboard.testing.StoreOpener")

    @pytest_asyncio.fixture(autouse=True)
    async def _close_opened(self, opener: StoreOpener[Any]) -> AsyncIterator[None]:
        yield
        await opener.close_all()

    @pytest_asyncio.fixture
    async def store(self, opener: StoreOpener[Any]) -> Any:
        return await opener()


def event(key: str, *, scope: str = "chat-1", received_at: float = 1000.0, text: str = "hi") -> InboundEvent:
    """An event of channel ``tg`` (journal key ``tg:<key>``, conversation ``tg:<scope>``)."""
    return InboundEvent(
        channel="tg",
        key=key,
        identity=Identity("telegram", "bot1", "42"),
        scope=scope,
        text=text,
        reply={"chat_id": 42, "thread": None},
        meta={"message_id": "m1"},
        received_at=received_at,
    )


def entry(key: str, *, scope: str = "chat-1", received_at: float = 1000.0, text: str = "hi") -> JournalEntry:
    return JournalEntry(event(key, scope=scope, received_at=received_at, text=text))


async def pending_keys(store: JournalStore) -> list[str]:
    return [e.event.key for e in await store.journal_pending()]
