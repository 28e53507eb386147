"""Redis layout v2 (issue 18): links in hash buckets, compact conversation strings, and the lazy
migration of what an earlier version left in Redis (v1 keys and strings, written here raw)."""

from __future__ import annotations

import json
import zlib

import pytest
import redis.asyncio as aioredis

from adapters.stores._redis_conv import decode_conversation, encode_conversation
from gateway import batched
from gateway.config import LinkingSettings
from gateway.linking import Linker
from gateway.store import ConversationState, Store

pytestmark = pytest.mark.redis

V1 = "switchboard:v1:"
US = "\x1f"
CID, MID = "3f2b8c1e-9a4d-4e7b-8c2a-1d5e6f7a8b9c", "0d8e7c6b-5a49-4382-a1b0-c9d8e7f6a5b4"


async def v1_link(r: aioredis.Redis, identity_key: str, user_id: str) -> None:
    """What the v1 code's SET_LINK left: the link string and the member of the userId's set."""
    await r.set(f"{V1}link:{identity_key}", user_id)
    await r.sadd(f"{V1}linked:{user_id}", identity_key)


async def v1_keys(r: aioredis.Redis) -> list[str]:
    return sorted(k for k in await r.keys(f"{V1}link*"))


# -- links -----------------------------------------------------------------------------------------


async def test_v1_links_are_read_and_moved_into_the_buckets(redis_backed: Store, raw_redis: aioredis.Redis) -> None:
    store, r = redis_backed, raw_redis
    await v1_link(r, "slack|T1|U1", "telegram.b.42")
    await v1_link(r, "web|w|a", "telegram.b.42")
    await v1_link(r, "email||x@y.org", "other")
    assert await store.get_link("slack|T1|U1") == "telegram.b.42"
    assert await v1_keys(r) == [f"{V1}link:email||x@y.org", f"{V1}link:web|w|a", f"{V1}linked:other",
                                f"{V1}linked:telegram.b.42"]
    assert await r.smembers(f"{V1}linked:telegram.b.42") == {"web|w|a"}
    assert await store.linked_identities("telegram.b.42") == ["slack|T1|U1", "web|w|a"]
    assert await v1_keys(r) == [f"{V1}link:email||x@y.org", f"{V1}linked:other"]
    # Read again, from v2 only.
    assert await store.get_link("slack|T1|U1") == "telegram.b.42"
    assert await store.get_link("web|w|a") == "telegram.b.42"
    assert await store.linked_identities("telegram.b.42") == ["slack|T1|U1", "web|w|a"]
    assert await store.linked_identities("other") == ["email||x@y.org"]
    assert await v1_keys(r) == []
    assert await store.get_link("email||x@y.org") == "other"


async def test_v1_links_are_relinked_and_unlinked(redis_backed: Store, raw_redis: aioredis.Redis) -> None:
    store, r = redis_backed, raw_redis
    await v1_link(r, "a|1|1", "person-u")
    await v1_link(r, "b|1|1", "person-u")
    await store.set_link("a|1|1", "person-v")
    assert await store.get_link("a|1|1") == "person-v"
    assert await store.linked_identities("person-u") == ["b|1|1"]
    assert await store.linked_identities("person-v") == ["a|1|1"]
    await v1_link(r, "c|1|1", "person-v")
    await store.delete_link("c|1|1")
    await store.delete_link("b|1|1")
    assert await store.get_link("b|1|1") is None and await store.get_link("c|1|1") is None
    assert await store.linked_identities("person-u") == []
    assert await store.linked_identities("person-v") == ["a|1|1"]
    assert await v1_keys(r) == []


async def test_a_forgotten_v1_link_leaves_nothing_behind(redis_backed: Store, raw_redis: aioredis.Redis) -> None:
    store, r = redis_backed, raw_redis
    await v1_link(r, "sms||+15550001", "telegram.b.42")
    await v1_link(r, "web|w|keep", "telegram.b.42")
    await Linker(LinkingSettings(), store).forget("sms||+15550001")
    assert await store.get_link("sms||+15550001") is None
    assert await store.linked_identities("telegram.b.42") == ["web|w|keep"]
    for key in await r.keys("*"):
        assert "+15550001" not in key
        if await r.type(key) == "hash":
            assert "+15550001" not in str(await r.hgetall(key))
        elif await r.type(key) == "set":
            assert "+15550001" not in str(await r.smembers(key))


async def test_turn_read_finds_and_moves_a_v1_link(redis_backed: Store, raw_redis: aioredis.Redis) -> None:
    store, r = redis_backed, raw_redis
    await v1_link(r, "chat||ann", "shared")
    await store.put_conversation("chat:ann", ConversationState("c1", "u1", "m1", 5.0))
    read = await batched.turn_read(store, "chat||ann", "chat:ann", 1234.5)
    state = read.state
    assert state == ConversationState("c1", "u1", "m1", 5.0) and read.link == "shared"
    assert await v1_keys(r) == []
    assert await batched.turn_read(store, "chat||ann", "chat:ann", None) == batched.TurnRead(state, "shared")
    assert await store.linked_identities("shared") == ["chat||ann"]


async def test_a_v1_link_written_after_the_upgrade_wins(redis_backed: Store, raw_redis: aioredis.Redis) -> None:
    """An instance still running the v1 code links someone this one already linked in v2: that
    link is the newer one (v2 code never leaves a v1 key behind)."""
    store, r = redis_backed, raw_redis
    await store.set_link("a|1|1", "person-u")
    await v1_link(r, "a|1|1", "person-v")
    assert await store.linked_identities("person-v") == ["a|1|1"]
    assert await store.linked_identities("person-u") == []
    assert await store.get_link("a|1|1") == "person-v"
    assert await v1_keys(r) == []


async def test_user_ids_sharing_a_bucket_and_tag_keep_their_own_links(redis_backed: Store) -> None:
    # Birthday search for two userIds whose crc32 agree on the 19 bits of bucket and tag.
    seen: dict[int, str] = {}
    for i in range(100_000):
        user_id = f"person-{i}"
        bits = zlib.crc32(user_id.encode()) % (4096 * 128)
        if bits in seen:
            first, second = seen[bits], user_id
            break
        seen[bits] = user_id
    store = redis_backed
    await store.set_link("a|1|1", first)
    await store.set_link("b|1|1", second)
    await store.set_link("c|1|1", second)
    assert await store.linked_identities(first) == ["a|1|1"]
    assert await store.linked_identities(second) == ["b|1|1", "c|1|1"]
    await store.set_link("c|1|1", first)
    assert await store.linked_identities(first) == ["a|1|1", "c|1|1"]
    assert await store.linked_identities(second) == ["b|1|1"]


# -- conversations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        (US.join([CID, "u1", MID, "1712345678.123456", "1"]),
         ConversationState(CID, "u1", MID, 1712345678.123456, True)),
        (US.join(["c1", "u1", "", "1.0", ""]), ConversationState("c1", "u1", None, 1.0)),
        (US.join(["~" + "a" * 22, "u1", "m1", "1e-07", ""]), ConversationState("~" + "a" * 22, "u1", "m1", 1e-7)),
        (json.dumps(["[x", "u", None, 1.5, True]), ConversationState("[x", "u", None, 1.5, True)),
    ],
)
async def test_v1_conversation_strings_are_read_and_rewritten_keeping_their_pause(
    redis_backed: Store, raw_redis: aioredis.Redis, raw: str, state: ConversationState
) -> None:
    store, key = redis_backed, f"{V1}conv:chat:ann"
    await raw_redis.set(key, raw)
    assert await store.get_conversation("chat:ann") == state
    assert await batched.turn_read(store, "chat||ann", "chat:ann", None) == batched.TurnRead(state, None)
    # A turn's write with the opposite flag keeps the stored pause (REMEMBER reads v1 strings too).
    turn = ConversationState("c2", "u1", "m2", 2.0, paused=not state.paused)
    await batched.remember(store, "chat:ann", turn, None, "c2", 60)
    assert await store.get_conversation("chat:ann") == ConversationState("c2", "u1", "m2", 2.0, state.paused)
    assert (await raw_redis.get(key)).split(US)[3] == "2000"  # rewritten as v2


async def test_v2_conversation_strings_are_compact(redis_backed: Store, raw_redis: aioredis.Redis) -> None:
    state = ConversationState(CID, "slack.T0A1B2C3D.U000000000A", MID, 1796018328.786647, paused=True)
    await redis_backed.put_conversation("slack:D000000000A", state)
    raw = await raw_redis.get(f"{V1}conv:slack:D000000000A")
    assert CID not in raw and len(raw) <= 92 and raw.endswith(US + "1")
    # 184 bytes, where the v1 string took 216 (jemalloc's 96-byte size class instead of 128).
    assert await raw_redis.memory_usage(f"{V1}conv:slack:D000000000A") <= 184
    got = await redis_backed.get_conversation("slack:D000000000A")
    assert got is not None and got.updated_at == 1796018328.787  # kept to the millisecond
    got.updated_at = state.updated_at
    assert got == state


@pytest.mark.parametrize(
    "state",
    [
        ConversationState(CID.upper(), "u", MID, 1.0),  # not canonical: kept verbatim
        ConversationState("~" + "a" * 22, "u", "~", 1.0),  # looks compacted: JSON
        ConversationState(CID, CID, None, -1.5),
        ConversationState("c", "u", None, float("inf")),
        ConversationState("c", "u", None, 1e300),
    ],
)
def test_the_compact_form_round_trips(state: ConversationState) -> None:
    assert decode_conversation(encode_conversation(state)) == state
