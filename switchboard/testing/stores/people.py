"""The contract of :class:`gateway.store.PeopleStore`: identities and links (admin API, linking, forgetting)."""

from __future__ import annotations

import asyncio
import time

from gateway.store import PeopleStore
from switchboard.testing.stores.support import ContractBase, StoreOpener


class PeopleStoreContract(ContractBase):
    """Subclass it and define an ``opener`` fixture returning a :class:`StoreOpener` of people stores."""

    # -- links -----------------------------------------------------------------------------------
    async def test_links_round_trip(self, store: PeopleStore) -> None:
        assert await store.get_link("slack|T1|U1") is None
        await store.set_link("slack|T1|U1", "u_shared")
        await store.set_link("telegram|bot|42", "u_shared")
        await store.set_link("slack|T1|U1", "u_other")
        assert await store.get_link("slack|T1|U1") == "u_other"
        await store.delete_link("slack|T1|U1")
        await store.delete_link("slack|T1|missing")
        assert await store.get_link("slack|T1|U1") is None
        assert await store.get_link("telegram|bot|42") == "u_shared"

    async def test_links_are_found_by_their_target(self, store: PeopleStore) -> None:
        await store.set_link("a|1|1", "person-u")
        await store.set_link("b|1|1", "person-u")
        await store.set_link("c|1|1", "person-v")
        assert await store.linked_identities("person-u") == ["a|1|1", "b|1|1"]
        await store.set_link("b|1|1", "person-v")  # moved: no longer found under its old target
        assert await store.linked_identities("person-u") == ["a|1|1"]
        assert await store.linked_identities("person-v") == ["b|1|1", "c|1|1"]
        await store.delete_link("a|1|1")
        await store.delete_link("a|1|1")  # deleting twice is harmless
        assert await store.linked_identities("person-u") == []
        assert await store.get_link("a|1|1") is None
        assert await store.get_link("b|1|1") == "person-v"

    # -- identities ------------------------------------------------------------------------------
    async def test_touching_an_identity_records_where_and_when_it_spoke(self, store: PeopleStore) -> None:
        assert await store.get_identity("sms|x|1") is None
        await store.touch_identity("sms|x|1", "sms:a", 1000.0)
        await store.touch_identity("sms|x|1", "sms:b", 1005.0)
        await store.touch_identity("sms|x|1", "sms:a", 1010.0)
        record = await store.get_identity("sms|x|1")
        assert record is not None
        assert (record.identity_key, record.first_seen, record.last_seen) == ("sms|x|1", 1000.0, 1010.0)
        assert record.conversations == {"sms:a": 1010.0, "sms:b": 1005.0}

    async def test_conversations_long_before_the_last_word_are_dropped(self, opener: StoreOpener[PeopleStore]) -> None:
        store = await opener("conversation_ttl=100")
        for i in range(40):  # enough for a store to prune what it keeps, not only to filter on reading
            await store.touch_identity("busy|1|1", f"thread:{i}", 1000.0 + i)
        await store.touch_identity("busy|1|1", "thread:new", 1135.0)
        record = await store.get_identity("busy|1|1")
        assert record is not None and record.first_seen == 1000.0 and record.last_seen == 1135.0
        assert sorted(record.conversations) == sorted(["thread:new", *(f"thread:{i}" for i in range(36, 40))])

    async def test_identities_are_listed_in_key_order_page_by_page(self, store: PeopleStore) -> None:
        keys = [f"web|w|user{i:02d}" for i in range(7)] + ["email||a@x.org", "slack|T1|U*[?"]
        for i, key in enumerate(reversed(keys)):
            await store.touch_identity(key, f"c:{i}", 100.0 + i)
        seen: list[str] = []
        after: str | None = None
        while True:
            page = await store.list_identities(after, 3)
            assert len(page) <= 3
            if not page:
                break
            seen += [r.identity_key for r in page]
            after = page[-1].identity_key
        assert seen == sorted(keys)
        assert [r.identity_key for r in await store.list_identities("slack|T1|U*[?", 10)] == [
            k for k in sorted(keys) if k > "slack|T1|U*[?"
        ]

    async def test_a_deleted_identity_is_gone_from_lookups_and_listings(self, store: PeopleStore) -> None:
        for key in ("a|1|1", "b|1|1", "c|1|1"):
            await store.touch_identity(key, "conv", 1.0)
        await store.delete_identity("b|1|1")
        assert await store.get_identity("b|1|1") is None
        assert [r.identity_key for r in await store.list_identities(None, 10)] == ["a|1|1", "c|1|1"]
        assert [r.identity_key for r in await store.list_identities(None, 1)] == ["a|1|1"]

    async def test_identities_idle_past_the_conversation_ttl_are_forgotten(
        self, opener: StoreOpener[PeopleStore]
    ) -> None:
        store = await opener("conversation_ttl=0.3")
        await store.touch_identity("old|1|1", "conv", time.time())
        await asyncio.sleep(0.4)  # the TTL itself is what is tested: real time has to pass
        await store.touch_identity("new|1|1", "conv", time.time())
        assert await store.get_identity("old|1|1") is None
        assert [r.identity_key for r in await store.list_identities(None, 10)] == ["new|1|1"]
