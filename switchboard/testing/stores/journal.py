"""The contract of :class:`gateway.store.JournalStore`: what the dispatcher relies on (SPEC §5).

Ack first, no duplicates, nothing lost, order per conversation, progress that survives a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.events import Identity, InboundEvent
from gateway.store import JournalEntry, JournalStatus, JournalStore
from switchboard.testing.stores.support import ContractBase, StoreOpener, entry, pending_keys


class JournalStoreContract(ContractBase):
    """Subclass it and define an ``opener`` fixture returning a :class:`StoreOpener` of journal stores."""

    async def test_same_event_twice_is_recorded_once(self, store: JournalStore) -> None:
        assert await store.journal_add(entry("1", text="first"))
        assert not await store.journal_add(entry("1", text="platform retry"))
        assert await store.journal_add(entry("2"))
        assert [e.event.text for e in await store.journal_pending()] == ["first", "hi"]

    async def test_concurrent_deliveries_of_one_event_record_it_once(
        self, opener: StoreOpener[Any], store: JournalStore
    ) -> None:
        instances = await opener.instances(store)
        results = await asyncio.gather(*(instances[i % 2].journal_add(entry("dup")) for i in range(20)))
        assert sorted(results) == [False] * 19 + [True]
        assert await pending_keys(store) == ["dup"]

    async def test_pending_is_oldest_first_with_ties_in_arrival_order(self, store: JournalStore) -> None:
        for key, received_at in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("b2", 2.0), ("b1", 2.0)]:
            assert await store.journal_add(entry(key, received_at=received_at, scope=key))
        assert await pending_keys(store) == ["a", "b", "b2", "b1", "c"]

    async def test_head_is_the_oldest_unfinished_entry_of_its_conversation(self, store: JournalStore) -> None:
        assert await store.journal_head("tg:chat-1") is None
        for key, scope, received_at in [("3", "A", 3.0), ("1", "A", 1.0), ("0", "B", 0.5), ("2b", "A", 2.0),
                                        ("2a", "A", 2.0)]:
            await store.journal_add(entry(key, scope=scope, received_at=received_at))
        heads = []
        while (head := await store.journal_head("tg:A")) is not None:
            heads.append(head.event.key)
            await store.journal_finish(head.key, "done")
        assert heads == ["1", "2b", "2a", "3"]
        assert await pending_keys(store) == ["0"]
        assert await store.journal_head("tg:chat-1") is None

    async def test_conversations_with_unfinished_entries_are_listed_once(self, store: JournalStore) -> None:
        """What the sweeper kicks after a restart or a dead instance: every conversation with work left."""
        assert await store.journal_conversations() == []
        for key, scope in [("1", "A"), ("2", "A"), ("3", "B"), ("4", "C")]:
            await store.journal_add(entry(key, scope=scope, received_at=float(key)))
        await store.journal_finish("tg:4", "done")
        assert sorted(await store.journal_conversations()) == ["tg:A", "tg:B"]
        await store.journal_finish("tg:1", "done")
        await store.journal_finish("tg:2", "failed")
        assert await store.journal_conversations() == ["tg:B"]

    async def test_event_round_trips_unchanged(self, store: JournalStore) -> None:
        original = InboundEvent(
            channel="slack-main",
            key="Ev01|ü",
            identity=Identity("slack", "T1", "U1"),
            scope="C1:1700000000.000100",
            text="Grüße 👋\nline two",
            kind="feedback",
            reply={"channel": "C1", "thread_ts": "1700000000.000100", "nested": {"a": [1, 2.5, None, True]}},
            meta={"feedback": "positive"},
            received_at=1712345678.123456,
        )
        assert await store.journal_add(JournalEntry(original))
        (got,) = await store.journal_pending()
        assert got.event == original
        assert (got.key, got.status, got.progress, got.attempts) == ("slack-main:Ev01|ü", "pending", {}, 0)

    async def test_progress_is_kept_and_readable(self, store: JournalStore) -> None:
        await store.journal_add(entry("1"))
        await store.journal_progress("tg:1", {"sent": ["ts1"], "parts": 1}, 1)
        await store.journal_progress("tg:1", {"sent": ["ts1", "ts2"], "parts": 2}, 2)
        (got,) = await store.journal_pending()
        assert (got.progress, got.attempts) == ({"sent": ["ts1", "ts2"], "parts": 2}, 2)
        head = await store.journal_head("tg:chat-1")
        assert head is not None and (head.event, head.progress, head.attempts) == (got.event, got.progress, 2)

    @pytest.mark.parametrize("status", ["done", "failed"])
    async def test_finished_event_leaves_pending_but_keeps_deduplicating(
        self, store: JournalStore, status: JournalStatus
    ) -> None:
        await store.journal_add(entry("1"))
        await store.journal_add(entry("2"))
        await store.journal_finish("tg:1", status)
        assert await pending_keys(store) == ["2"]
        assert not await store.journal_add(entry("1"))
        head = await store.journal_head("tg:chat-1")
        assert head is not None and head.key == "tg:2"
        # A late progress write (a slow worker) must not bring the finished entry back.
        await store.journal_progress("tg:1", {"parts": 9}, 9)
        await store.journal_finish("tg:1", "failed")
        assert await pending_keys(store) == ["2"]
        await store.journal_finish("tg:never-added", "done")
        assert await store.journal_add(entry("never-added"))

    async def test_finished_keys_are_forgotten_after_the_dedup_ttl(self, opener: StoreOpener[JournalStore]) -> None:
        store = await opener("dedup_ttl=0.2")
        await store.journal_add(entry("1"))
        await store.journal_finish("tg:1", "done")
        assert not await store.journal_add(entry("1"))
        await asyncio.sleep(0.3)  # the TTL itself is what is tested: real time has to pass
        assert await store.journal_add(entry("1", text="again"))
        assert [e.event.text for e in await store.journal_pending()] == ["again"]

    async def test_pending_events_have_no_expiry(self, opener: StoreOpener[JournalStore]) -> None:
        store = await opener("dedup_ttl=0.1")
        await store.journal_add(entry("1"))
        await asyncio.sleep(0.2)
        assert await pending_keys(store) == ["1"]
        assert not await store.journal_add(entry("1"))

    async def test_restart_resumes_pending_events_with_their_progress(
        self, opener: StoreOpener[JournalStore], store: JournalStore
    ) -> None:
        if not opener.durable:
            pytest.skip("the store keeps nothing across a restart (StoreOpener.durable is False)")
        for key, at in [("1", 1.0), ("2", 2.0), ("3", 3.0)]:
            await store.journal_add(entry(key, received_at=at))
        await store.journal_progress("tg:2", {"message_ids": [7]}, 1)
        await store.journal_finish("tg:1", "done")
        store = await opener.reopen(store)
        assert [(e.event.key, e.progress, e.attempts) for e in await store.journal_pending()] == [
            ("2", {"message_ids": [7]}, 1),
            ("3", {}, 0),
        ]
        assert not await store.journal_add(entry("1"))
        assert not await store.journal_add(entry("2"))
        head = await store.journal_head("tg:chat-1")
        assert head is not None and (head.key, head.progress) == ("tg:2", {"message_ids": [7]})

    async def test_forgetting_a_conversation_abandons_its_entries_but_keeps_dedup(self, store: JournalStore) -> None:
        await store.journal_add(entry("done-1", scope="+15550001"))
        await store.journal_finish("tg:done-1", "done")
        await store.journal_add(entry("pending-1", scope="+15550001"))
        await store.journal_add(entry("other-1", scope="+15550002", text="keep me"))
        await store.journal_forget("tg:+15550001")
        await store.journal_forget("tg:never-seen")
        assert [e.event.text for e in await store.journal_pending()] == ["keep me"]
        assert await store.journal_head("tg:+15550001") is None
        assert await store.journal_conversations() == ["tg:+15550002"]
        # A platform retry of a forgotten message is still a duplicate, never answered again.
        assert not await store.journal_add(entry("done-1", scope="+15550001"))
        assert not await store.journal_add(entry("pending-1", scope="+15550001"))
