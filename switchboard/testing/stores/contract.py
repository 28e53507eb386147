"""The contract of the whole :class:`gateway.store.Store`: the three concerns, the lifecycle, forgetting."""

from __future__ import annotations

from gateway.store import ConversationState, Store
from switchboard.testing.stores.journal import JournalStoreContract
from switchboard.testing.stores.keyvalue import KeyValueStoreContract
from switchboard.testing.stores.people import PeopleStoreContract
from switchboard.testing.stores.support import StoreOpener, entry, pending_keys


class StoreContract(JournalStoreContract, KeyValueStoreContract, PeopleStoreContract):
    """Every test of the three concern suites, plus what only a whole store can be asked."""

    async def test_ping_and_url(self, opener: StoreOpener[Store], store: Store) -> None:
        """``url`` is what logs and ``/status`` show: the store's scheme (and no password, when given one)."""
        await store.ping()
        assert store.url.partition(":")[0] == opener.url.partition(":")[0]

    async def test_forgetting_a_conversation_keeps_nothing_of_it_but_dedup(self, store: Store) -> None:
        await store.journal_add(entry("done-1", scope="+15550001"))
        await store.journal_finish("tg:done-1", "done")
        await store.journal_add(entry("pending-1", scope="+15550001"))
        await store.journal_add(entry("other-1", scope="+15550002", text="keep me"))
        await store.put_conversation("tg:+15550001", ConversationState("c1", "u1", "m1", 1.0))
        await store.put_conversation("tg:+15550002", ConversationState("c2", "u2", "m2", 1.0))

        await store.forget_conversation("tg:+15550001")

        assert await store.get_conversation("tg:+15550001") is None
        assert await store.get_conversation("tg:+15550002") is not None
        assert await pending_keys(store) == ["other-1"]
        assert await store.journal_head("tg:+15550001") is None
        assert not await store.journal_add(entry("done-1", scope="+15550001"))
        assert not await store.journal_add(entry("pending-1", scope="+15550001"))
