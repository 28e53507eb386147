"""The contract of :class:`gateway.store.KeyValueStore`: values, counters, leases, conversation state."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.store import ConversationState, KeyValueStore
from switchboard.testing.stores.support import ContractBase, StoreOpener


class KeyValueStoreContract(ContractBase):
    """Subclass it and define an ``opener`` fixture returning a :class:`StoreOpener` of key-value stores."""

    # -- values ----------------------------------------------------------------------------------
    async def test_values_with_and_without_expiry(self, store: KeyValueStore) -> None:
        assert await store.get_value("cursor") is None
        await store.set_value("cursor", "41")
        await store.set_value("cursor", "42")
        await store.set_value("short", "x", ttl=0.15)
        await store.set_value("renewed", "old", ttl=0.15)
        await store.set_value("renewed", "new")  # a plain set drops the earlier expiry
        assert await store.get_value("short") == "x"
        await asyncio.sleep(0.25)  # the TTL itself is what is tested: real time has to pass
        assert (await store.get_value("cursor"), await store.get_value("short")) == ("42", None)
        assert await store.get_value("renewed") == "new"
        await store.delete_value("cursor")
        await store.delete_value("missing")
        assert await store.get_value("cursor") is None

    async def test_values_are_deleted_by_prefix_and_only_by_prefix(self, store: KeyValueStore) -> None:
        for key in ("rate:sms|x|1:1", "rate:sms|x|1:2", "rate:sms|x|10:1", "x*[1", "xy[1", "other"):
            await store.set_value(key, "v")
        await store.incr("rate:sms|x|1:3", 60)
        assert await store.delete_values("rate:sms|x|1:") == 3
        assert await store.get_value("rate:sms|x|1:1") is None
        assert await store.get_value("rate:sms|x|10:1") == "v"
        assert await store.delete_values("x*[") == 1  # glob characters are plain text here
        assert await store.get_value("xy[1") == "v"
        assert await store.get_value("other") == "v"
        assert await store.delete_values("nothing-here:") == 0

    # -- counters --------------------------------------------------------------------------------
    async def test_incr_counts_in_a_window_that_later_increments_do_not_extend(self, store: KeyValueStore) -> None:
        assert [await store.incr("rate:u1", 0.4) for _ in range(3)] == [1, 2, 3]
        assert await store.get_value("rate:u1") == "3"
        assert await store.incr("rate:u2", 0.4) == 1
        await asyncio.sleep(0.2)
        assert await store.incr("rate:u1", 0.4) == 4
        await asyncio.sleep(0.3)
        assert await store.incr("rate:u1", 0.4) == 1

    async def test_concurrent_incr_loses_no_count(self, opener: StoreOpener[Any], store: KeyValueStore) -> None:
        instances = await opener.instances(store)
        counts = await asyncio.gather(*(instances[i % 2].incr("burst", 10) for i in range(30)))
        assert sorted(counts) == list(range(1, 31))

    # -- leases ----------------------------------------------------------------------------------
    async def test_lease_is_exclusive_extendable_and_only_its_owner_unlocks(self, store: KeyValueStore) -> None:
        assert await store.try_lock("conv:1", "a", 5)
        assert not await store.try_lock("conv:1", "b", 5)
        assert await store.try_lock("conv:1", "a", 5)
        assert await store.try_lock("conv:2", "b", 5)
        await store.unlock("conv:1", "b")
        assert not await store.try_lock("conv:1", "b", 5)
        await store.unlock("conv:1", "a")
        assert await store.try_lock("conv:1", "b", 5)
        assert not await store.try_lock("conv:1", "a", 5)

    async def test_lease_expires_unless_extended(self, store: KeyValueStore) -> None:
        assert await store.try_lock("stuck", "dead-worker", 0.15)
        assert await store.try_lock("busy", "worker", 0.3)
        await asyncio.sleep(0.2)
        assert await store.try_lock("busy", "worker", 0.3)  # extends from now
        assert await store.try_lock("stuck", "live-worker", 5)
        await asyncio.sleep(0.2)
        assert not await store.try_lock("busy", "other", 5)
        await store.unlock("stuck", "dead-worker")  # the late unlock of the old owner is ignored
        assert not await store.try_lock("stuck", "dead-worker", 5)

    async def test_concurrent_lease_requests_have_one_winner(
        self, opener: StoreOpener[Any], store: KeyValueStore
    ) -> None:
        instances = await opener.instances(store)
        won = await asyncio.gather(*(instances[i % 2].try_lock("conv", f"w{i}", 5) for i in range(20)))
        assert won.count(True) == 1

    # -- conversation state ----------------------------------------------------------------------
    @pytest.mark.parametrize(
        "state",
        [
            ConversationState("conv_1", "telegram.bot1.42", "msg_1", 1700000000.25, paused=True),
            ConversationState(None, "u_ü"),
            # Values a compact encoding could trip on.
            ConversationState("", "u", "", 0.0),
            ConversationState("[x", "a\x1fb", "m\x1f", -1.5e-7, paused=True),
        ],
    )
    async def test_conversations_round_trip(self, store: KeyValueStore, state: ConversationState) -> None:
        assert await store.get_conversation("tg:chat-1") is None
        await store.put_conversation("tg:chat-1", state)
        assert await store.get_conversation("tg:chat-1") == state
        fresh = ConversationState("conv_2", "u_1", "msg_9", 1.0)
        await store.put_conversation("tg:chat-1", fresh)
        await store.put_conversation("tg:chat-2", state)
        assert await store.get_conversation("tg:chat-1") == fresh
        await store.drop_conversation("tg:chat-1")
        await store.drop_conversation("tg:missing")
        assert await store.get_conversation("tg:chat-1") is None
        assert await store.get_conversation("tg:chat-2") == state

    async def test_idle_conversations_expire_and_each_put_renews_them(self, opener: StoreOpener[KeyValueStore]) -> None:
        store = await opener("conversation_ttl=0.3")
        await store.put_conversation("s", ConversationState("c", "u"))
        await asyncio.sleep(0.2)
        await store.put_conversation("s", ConversationState("c", "u", "m"))
        await asyncio.sleep(0.2)
        assert await store.get_conversation("s") == ConversationState("c", "u", "m")
        await asyncio.sleep(0.2)
        assert await store.get_conversation("s") is None
