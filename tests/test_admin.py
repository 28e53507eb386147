"""The admin API: token checks, identities with cursor pagination, links, conversations and their
messages, pause/resume, and forgetting a person (asserted on the real Redis keys)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

import tests.test_handoff as handoff_tests
from gateway.admin.api import decode_id, encode_id
from gateway.commands import NEW_CONVERSATION_TEXT
from gateway.handoff import RESOLVED_TEXT
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis

ADMIN = "adm1n-t0ken-for-tests"
TOKEN = "echo-secret"
ECHO = {"echo": {"type": "echo", "token": TOKEN}}
AUTH = {"Authorization": f"Bearer {ADMIN}"}
ENDPOINTS = [
    ("GET", "/admin/openapi.json"),
    ("GET", "/admin/identities"),
    ("GET", "/admin/waiting"),
    ("GET", "/admin/identities/ZWNobXx8YQ"),
    ("DELETE", "/admin/identities/ZWNobXx8YQ"),
    ("PUT", "/admin/identities/ZWNobXx8YQ/link"),
    ("DELETE", "/admin/identities/ZWNobXx8YQ/link"),
    ("GET", "/admin/conversations/ZWNobzph"),
    ("GET", "/admin/conversations/ZWNobzph/messages"),
    ("POST", "/admin/conversations/ZWNobzph/pause"),
    ("POST", "/admin/conversations/ZWNobzph/resume"),
]


class Admin:
    def __init__(self, gw: GatewayUnderTest, http: aiohttp.ClientSession) -> None:
        self.gw, self.http = gw, http
        self._n = 0

    async def call(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                   body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        async with self.http.request(method, self.gw.url + path, headers=AUTH if headers is None else headers,
                                     data=data) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if resp.content_type == "application/json" else text

    async def say(self, user: str, text: str, scope: str | None = None) -> str:
        self._n += 1
        body = {"id": f"m{self._n}", "user": user, "text": text, **({"scope": scope} if scope else {})}
        async with self.http.post(f"{self.gw.url}/webhooks/echo", json=body, headers={"X-Echo-Token": TOKEN}) as r:
            assert r.status == 200
        await self.gw.idle()
        import sb_echo  # type: ignore[import-not-found]

        return str(sb_echo.SENT[-1]["text"])

    def chats(self) -> list[dict[str, Any]]:
        return [r.json for r in self.gw.emulator.requests if r.path.endswith("/chat")]


@pytest.fixture
async def admin(echo_plugin: Any) -> AsyncIterator[Admin]:
    async with running_gateway(ECHO, gateway={"admin_token": ADMIN}) as gw, aiohttp.ClientSession() as http:
        yield Admin(gw, http)


def ident(key: str) -> str:
    return encode_id(key)


# -- the token -------------------------------------------------------------------------------------------


async def test_admin_is_absent_without_a_token(echo_plugin: Any) -> None:
    async with running_gateway(ECHO) as gw, aiohttp.ClientSession() as http:
        for method, path in ENDPOINTS:
            async with http.request(method, gw.url + path, headers=AUTH) as resp:
                assert resp.status == 404, path


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN}"}, {"Authorization": ADMIN},
     {"Authorization": f"Bearer {ADMIN}x"}, {"Authorization": "Bearer "}],
    ids=["missing", "wrong", "basic", "bare", "longer", "empty"],
)
async def test_every_endpoint_refuses_a_missing_or_wrong_token(admin: Admin, headers: dict[str, str]) -> None:
    await admin.say("ann", "hello")
    for method, path in ENDPOINTS:
        status, body = await admin.call(method, path, headers=headers, body={"to": "ZWNobXx8Yg"})
        assert status == 401, (method, path)
        assert body["error"]["code"] == "UNAUTHORIZED"


async def test_every_endpoint_answers_with_the_token(admin: Admin) -> None:
    await admin.say("ann", "hello")
    await admin.say("bob", "hi")
    ann, conv = ident("echo||ann"), ident("echo:ann")
    expected = {
        ("GET", "/admin/openapi.json"): 200,
        ("GET", "/admin/identities"): 200,
        ("GET", f"/admin/identities/{ann}"): 200,
        ("GET", f"/admin/conversations/{conv}"): 200,
        ("GET", f"/admin/conversations/{conv}/messages"): 200,
        ("POST", f"/admin/conversations/{conv}/pause"): 200,
        ("POST", f"/admin/conversations/{conv}/resume"): 200,
        ("PUT", f"/admin/identities/{ann}/link"): 200,  # linking starts ann afresh: conversations last
        ("DELETE", f"/admin/identities/{ann}/link"): 200,
        ("DELETE", f"/admin/identities/{ann}"): 200,
    }
    for (method, path), status in expected.items():
        got, body = await admin.call(method, path, body={"to": ident("echo||bob")} if method == "PUT" else None)
        assert got == status, (method, path, body)


# -- identities ------------------------------------------------------------------------------------------


async def test_identities_are_listed_page_by_page(admin: Admin) -> None:
    users = [f"user{i}" for i in range(7)]
    for user in users:
        await admin.say(user, "hello")
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        status, page = await admin.call("GET", "/admin/identities?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200 and len(page["data"]) <= 3
        seen += [item["externalId"] for item in page["data"]]
        cursor = page["pagination"]["cursor"]
        assert page["pagination"]["hasMore"] == (cursor is not None)
        if cursor is None:
            break
    assert seen == sorted(users)
    first = (await admin.call("GET", "/admin/identities?limit=1"))[1]["data"][0]
    assert first["key"] == "echo||user0" and first["userId"] == "echo..user0" and not first["linked"]
    assert [c["key"] for c in first["conversations"]] == ["echo:user0"]
    assert first["conversations"][0]["conversationId"]
    for bad in ("limit=0", "limit=101", "limit=x", "cursor=%25%25", "cursor=a", "cursor="):
        status, body = await admin.call("GET", f"/admin/identities?{bad}")
        assert status == 400, bad
        assert body["error"]["code"] in ("INVALID_LIMIT", "INVALID_CURSOR")


async def test_unknown_identities_and_conversations_are_404(admin: Admin) -> None:
    for path in (f"/admin/identities/{ident('echo||nobody')}", "/admin/identities/%2F%2F",
                 "/admin/identities/not-base64!", f"/admin/identities/{ident('no pipes')}",
                 f"/admin/conversations/{ident('echo:nobody')}", "/admin/conversations/x"):
        status, _ = await admin.call("GET", path)
        assert status == 404, path


async def test_operators_link_and_unlink_identities(admin: Admin) -> None:
    await admin.say("ann", "hello")
    await admin.say("bob", "hi")
    bob_link = f"/admin/identities/{ident('echo||bob')}/link"
    status, bob = await admin.call("PUT", bob_link, body={"to": ident("echo||ann")})
    assert status == 200 and bob["userId"] == "echo..ann" and bob["linked"]
    assert [s["key"] for s in bob["sameUser"]] == ["echo||ann"]
    assert "message 1" in await admin.say("bob", "who am I now?")  # a new conversation, under ann's userId
    assert admin.chats()[-1]["userId"] == "echo..ann"
    status, bob = await admin.call("DELETE", f"/admin/identities/{ident('echo||bob')}/link")
    assert status == 200 and bob["userId"] == "echo..bob" and not bob["linked"]
    await admin.say("bob", "and now?")
    assert admin.chats()[-1]["userId"] == "echo..bob"
    assert (await admin.call("DELETE", f"/admin/identities/{ident('echo||bob')}/link"))[0] == 404
    for body in ({}, {"to": 5}, {"to": "x"}, {"to": ident("echo||bob")}, [1], "text"):
        assert (await admin.call("PUT", f"/admin/identities/{ident('echo||bob')}/link", body=body))[0] == 400, body
    status, _ = await admin.call("PUT", f"/admin/identities/{ident('echo||bob')}/link", body={"to": ident("echo||zz")})
    assert status == 404


# -- conversations ---------------------------------------------------------------------------------------


async def test_a_conversations_messages_come_from_the_agent_page_by_page(admin: Admin) -> None:
    for text in ("one", "two", "three"):
        await admin.say("ann", text)
    conv = ident("echo:ann")
    status, info = await admin.call("GET", f"/admin/conversations/{conv}")
    assert status == 200 and info["key"] == "echo:ann" and info["userId"] == "echo..ann" and not info["paused"]
    status, page = await admin.call("GET", f"/admin/conversations/{conv}/messages?limit=4")
    assert status == 200 and page["pagination"]["hasMore"]
    newest = [m["role"] for m in page["data"]]
    assert newest == ["user", "assistant", "user", "assistant"]
    assert page["data"][-1]["parts"][0]["text"].startswith('You said: "three"')
    status, older = await admin.call("GET", f"/admin/conversations/{conv}/messages?limit=4&cursor="
                                     + page["pagination"]["cursor"])
    assert status == 200 and not older["pagination"]["hasMore"]
    assert older["data"][0]["parts"][0]["text"] == "one"
    assert (await admin.call("GET", f"/admin/conversations/{conv}/messages?cursor=bogus"))[0] == 400


async def test_pause_keeps_the_agent_out_until_resume(admin: Admin) -> None:
    await admin.say("ann", "hello")
    conv = ident("echo:ann")
    status, info = await admin.call("POST", f"/admin/conversations/{conv}/pause")
    assert status == 200 and info["paused"]
    calls = len(admin.chats())
    await admin.say("ann", "anyone?")
    await admin.say("ann", "/new")  # an operator's pause outlives /new
    await admin.say("ann", "hello again?")
    assert len(admin.chats()) == calls
    status, info = await admin.call("POST", f"/admin/conversations/{conv}/resume")
    assert status == 200 and not info["paused"]
    assert "message 1 of this conversation" in await admin.say("ann", "back")
    import sb_echo  # type: ignore[import-not-found]

    assert [s["text"] for s in sb_echo.SENT].count(NEW_CONVERSATION_TEXT) == 1


async def test_resume_ends_a_handoff() -> None:
    async with handoff_tests.desk(admin_token=ADMIN) as d, aiohttp.ClientSession() as http:
        admin = Admin(d.gw, http)
        await d.sms("/human")
        conv = ident(f"sms:{handoff_tests.PHONE}")
        status, info = await admin.call("GET", f"/admin/conversations/{conv}")
        assert status == 200 and info["handoff"] and info["paused"]
        status, info = await admin.call("POST", f"/admin/conversations/{conv}/resume")
        assert status == 200 and not info["paused"] and not info["handoff"]
        assert d.twilio.bodies(handoff_tests.PHONE)[-1] == RESOLVED_TEXT
        assert "by an operator" in d.thread(d.threads()[0])[-1]
        await d.sms("back with the bot")
        assert d.chats()[-1]["message"] == "back with the bot"


# -- forgetting a person ----------------------------------------------------------------------------------


@pytest.mark.redis
async def test_forgetting_a_person_leaves_no_trace_in_redis(echo_plugin: Any) -> None:
    flush_test_redis()
    async with running_gateway(ECHO, store=REDIS_TEST_URL, gateway={"admin_token": ADMIN}) as gw, \
            aiohttp.ClientSession() as http:
        admin = Admin(gw, http)
        # zed on two scopes, a second identity linked to zed by code, and an unrelated person.
        await admin.say("zed", "hello, I am zed")
        await admin.say("zed", "in a group", scope="group-of-zed")
        await admin.say("zed", "/retry")
        code = (await admin.say("zed", "/link")).split("code is ")[1].split(".")[0]
        await admin.say("zed-alt", "hello")
        assert "Linked" in await admin.say("zed-alt", code)
        await admin.say("zed-alt", "again")
        await admin.say("zed", "/link")  # an open code too
        await admin.say("amy", "I stay")
        async with aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True) as r:
            before = await _dump(r)
        assert any("zed" in k for k in before) and any("zed" in v for v in before.values())

        status, done = await admin.call("DELETE", f"/admin/identities/{ident('echo||zed-alt')}")
        assert status == 200
        assert done["forgotten"] == ["echo||zed", "echo||zed-alt"]
        assert done["conversations"] == ["echo:group-of-zed", "echo:zed", "echo:zed-alt"]
        assert len(done["agentConversations"]) == 3 and done["userIds"] == ["echo..zed", "echo..zed-2dalt"]

        async with aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True) as r:
            after = await _dump(r)
        leftovers = {k: v for k, v in after.items() if "zed" in k or "zed" in v
                     or any(c in k or c in v for c in done["agentConversations"])}
        assert leftovers == {}
        # What is left: amy's state, and bare dedup markers (status only) of the forgotten events.
        assert any("amy" in k for k in after)
        assert {v for k, v in after.items() if ":journal:" in k} <= {"{'s': 'done'}", "{'s': 'failed'}"}

        assert (await admin.call("GET", f"/admin/identities/{ident('echo||zed')}"))[0] == 404
        assert (await admin.call("DELETE", f"/admin/identities/{ident('echo||zed')}"))[0] == 404
        assert "message 1 of this conversation" in await admin.say("zed", "I'm back")  # a stranger again
        assert admin.chats()[-1]["userId"] == "echo..zed"
        status, zed = await admin.call("GET", f"/admin/identities/{ident('echo||zed')}")
        assert status == 200 and [c["key"] for c in zed["conversations"]] == ["echo:zed"]  # known afresh


async def _dump(r: aioredis.Redis) -> dict[str, str]:
    """Every key of the test database with its value as text."""
    out = {}
    for key in await r.keys("*"):
        kind = await r.type(key)
        value: Any = {
            "string": r.get, "hash": r.hgetall, "set": r.smembers, "list": lambda k: r.lrange(k, 0, -1),
            "zset": lambda k: r.zrange(k, 0, -1),
        }[kind](key)
        out[key] = str(await value)
    return out


def test_ids_round_trip() -> None:
    for key in ("echo||ann", "email||a/b@c.org", "web|site|ü-✓", "tg:-100:7"):
        assert decode_id(encode_id(key)) == key
    for bad in ("", "a", "!!", "%2F", "a" * 5000):
        assert decode_id(bad) is None
