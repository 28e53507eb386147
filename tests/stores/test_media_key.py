"""The media link key kept in the store: one key for every instance, kept across restarts."""

from __future__ import annotations

import asyncio

from gateway.media_links import SECRET_KEY, MediaLinks, load_key
from gateway.store import Store
from tests.stores.support import Opener


async def test_instances_starting_together_agree_and_a_restart_keeps_the_key(store: Store, opener: Opener) -> None:
    first, second = await opener.instances(store)
    keys = await asyncio.gather(load_key(None, first), load_key(None, second), load_key(None, first))
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    link = MediaLinks(keys[0], "https://gw.example", 60).link("tg", "file-1")
    if opener.kind != "memory":
        restarted = await opener.reopen(second)
        again = await load_key(None, restarted)
        assert again == keys[0]
        opaque, query = link.split("/media/tg/")[1].split("?")
        exp, sig = (part.split("=")[1] for part in query.split("&"))
        assert MediaLinks(again, "https://gw.example", 60).check("tg", opaque, exp, sig) == "file-1"


async def test_a_configured_secret_wins_and_is_never_stored(store: Store) -> None:
    key = await load_key("a-configured-secret-of-some-length", store)
    assert key == await load_key("a-configured-secret-of-some-length", store)
    assert key != await load_key("another-configured-secret-value", store)
    assert await store.get_value(SECRET_KEY) is None
