"""Signed visitor identity, history and starting afresh on the web chat, through a real gateway.

Hashes are made with ``hmac`` directly, the way docs/setup/web.md tells a site to compute them,
so the verifier is tested against an independent implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from channels.web.visitor import EXPIRED, NOT_CONFIGURED, NOT_VERIFIED, Claim, IdentityVerifier
from gateway.commands import LINK_TEXTS
from gateway.linking import LinkResult
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.test_web_channel import answer_text, read_ui_stream

SECRET = "site-secret"


def sign(user_id: str, timestamp: int | None = None, secret: str = SECRET) -> str:
    if timestamp is None:
        return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    mac = hmac.new(secret.encode(), f"{user_id}:{timestamp}".encode(), hashlib.sha256).hexdigest()
    return f"{mac}:{timestamp}"


class Site:
    def __init__(self, gw: GatewayUnderTest, http: aiohttp.ClientSession, channel: str = "web") -> None:
        self.gw, self.http, self.base = gw, http, f"{gw.url}/chat/{channel}"

    async def chat(self, session: str, text: str, user: str | None = None, user_hash: str | None = None,
                   ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"sessionId": session, "message": text}
        if user is not None:
            body |= {"userId": user, "userHash": sign(user) if user_hash is None else user_hash}
        async with self.http.post(self.base + "/messages", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return read_ui_stream(await resp.read())

    async def history(self, session: str, user: str | None = None, user_hash: str | None = None,
                      **query: str) -> dict[str, Any]:
        headers = {}
        if user is not None:
            headers = {"X-Switchboard-User-Id": quote(user),
                       "X-Switchboard-User-Hash": sign(user) if user_hash is None else user_hash}
        async with self.http.get(self.base + "/history", params={"sessionId": session, **query},
                                 headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            page: dict[str, Any] = await resp.json()
            return page


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    channels = {"web": {"type": "web", "identity_secret": SECRET}, "help": {"type": "web"}}
    async with running_gateway(channels) as gw, aiohttp.ClientSession() as http:
        yield Site(gw, http)


def users(gw: GatewayUnderTest) -> list[str | None]:
    return [c.user_id for c in gw.emulator.state.conversations.values()]


async def test_a_verified_visitor_is_one_user_and_one_conversation_on_every_browser(site: Site) -> None:
    first = await site.chat("laptop-session", "hello", user="zoë@example.com")
    second = await site.chat("phone-session-2", "from my phone", user="zoë@example.com")
    assert answer_text(first).endswith("This is message 1 of this conversation.")
    assert answer_text(second).endswith("This is message 2 of this conversation.")
    assert users(site.gw) == ["web.web.u.zo-c3-ab-40example-2ecom"]
    meta = second[-1]["messageMetadata"]
    assert meta["verified"] is True and meta["sessionId"] == "phone-session-2"  # the browser's own session
    assert "identityNotice" not in meta


@pytest.mark.parametrize("user_hash", ["0" * 64, sign("mallory"), sign("alice", secret="other"), "not-hex", ""])
async def test_a_wrong_hash_is_an_anonymous_session_told_so_never_the_users_thread(
    site: Site, user_hash: str
) -> None:
    await site.chat("alice-session", "my secret order", user="alice")
    events = await site.chat("mallory-session", "what did alice say?", user="alice", user_hash=user_hash)
    text = answer_text(events)
    assert text.startswith(NOT_VERIFIED)
    assert text.endswith("This is message 1 of this conversation.")  # a conversation of its own
    assert events[-1]["messageMetadata"]["identityNotice"] == NOT_VERIFIED
    assert "verified" not in events[-1]["messageMetadata"]
    assert users(site.gw) == ["web.web.u.alice", "web.web.mallory-2dsession"]
    page = await site.history("mallory-session", user="alice", user_hash=user_hash)
    assert page["verified"] is False and page["identityNotice"] == NOT_VERIFIED
    assert [m["text"] for m in page["messages"] if m["role"] == "user"] == ["what did alice say?"]


async def test_a_user_id_cannot_pose_as_an_anonymous_session_or_the_other_way(site: Site) -> None:
    # "abcdefgh12" is a valid session id; a site user with that id is still a different person.
    await site.chat("abcdefgh12", "anonymous", user=None)
    await site.chat("other-session", "verified", user="abcdefgh12")
    assert users(site.gw) == ["web.web.abcdefgh12", "web.web.u.abcdefgh12"]
    page = await site.history("abcdefgh12")
    assert [m["text"] for m in page["messages"] if m["role"] == "user"] == ["anonymous"]


async def test_without_a_secret_a_claimed_identity_is_anonymous_with_a_notice(site: Site) -> None:
    site.base = f"{site.gw.url}/chat/help"
    events = await site.chat("help-session", "hi", user="alice")
    assert answer_text(events).startswith(NOT_CONFIGURED)
    assert users(site.gw) == ["web.help.help-2dsession"]


async def test_history_pages_backwards_through_the_current_conversation(site: Site) -> None:
    for n in range(1, 4):
        await site.chat("laptop-session", f"question {n}", user="alice")
    newest = await site.history("phone-session", user="alice", limit="4")
    assert newest["verified"] is True and newest["hasMore"] is True
    assert [(m["role"], m["text"][:10]) for m in newest["messages"]] == [
        ("user", "question 2"), ("assistant", 'You said: '), ("user", "question 3"), ("assistant", "You said: ")]
    assert all(m["id"] for m in newest["messages"])
    older = await site.history("phone-session", user="alice", limit="4", cursor=newest["cursor"])
    assert [(m["role"], m["text"][:10]) for m in older["messages"]] == [
        ("user", "question 1"), ("assistant", "You said: ")]
    assert older["hasMore"] is False and older["cursor"] is None
    # Feedback given on another device shows in the history.
    answer_id = newest["messages"][-1]["id"]
    async with site.http.post(site.base + "/feedback", json={
            "sessionId": "phone-session", "messageId": answer_id, "feedback": "negative",
            "userId": "alice", "userHash": sign("alice")}) as resp:
        assert resp.status == 202
    await site.gw.idle()
    again = await site.history("tablet-session", user="alice")
    assert again["messages"][-1]["feedback"] == "negative"


async def test_history_refuses_bad_queries_and_is_empty_before_the_first_message(site: Site) -> None:
    assert (await site.history("never-talked", user="alice")) == {
        "messages": [], "cursor": None, "hasMore": False, "verified": True}
    for query, code in [({"sessionId": "bad id"}, "invalid_session_id"),
                        ({"sessionId": "session-ok", "limit": "500"}, "invalid_limit"),
                        ({"sessionId": "session-ok", "cursor": "<script>"}, "invalid_cursor")]:
        async with site.http.get(site.base + "/history", params=query) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == code


async def test_new_conversation_starts_afresh_for_every_device_of_a_verified_visitor(site: Site) -> None:
    await site.chat("laptop-session", "first thread", user="alice")
    async with site.http.post(site.base + "/new", json={
            "sessionId": "phone-session", "userId": "alice", "userHash": sign("alice")}) as resp:
        assert resp.status == 200 and (await resp.json())["verified"] is True
    assert (await site.history("laptop-session", user="alice"))["messages"] == []
    events = await site.chat("laptop-session", "second thread", user="alice")
    assert answer_text(events).endswith("This is message 1 of this conversation.")


async def test_a_verified_visitor_links_to_another_channel_with_a_code(site: Site) -> None:
    issued = answer_text(await site.chat("laptop-session", "/link", user="alice"))
    code = re.search(r"[A-Z2-9]{4}-[A-Z2-9]{4}", issued)
    assert code, issued
    site.base = f"{site.gw.url}/chat/help"
    linked = answer_text(await site.chat("help-session", code.group(0)))
    assert linked == LINK_TEXTS[LinkResult.LINKED]
    await site.chat("help-session", "hello from the help page")
    assert users(site.gw)[-1] == "web.web.u.alice"


def test_verifier_accepts_only_fresh_dated_hashes_when_a_ttl_is_set() -> None:
    now = 1_800_000_000.0
    verifier = IdentityVerifier(SECRET, ttl=3600, clock=lambda: now)
    assert verifier.check(Claim("alice", sign("alice", int(now) - 3599))) is None
    assert verifier.check(Claim("alice", sign("alice", int(now) - 3601))) == EXPIRED
    assert verifier.check(Claim("alice", sign("alice"))) == NOT_VERIFIED  # undated never expires: refused
    assert verifier.check(Claim("alice", sign("alice", int(now) + 3600))) == NOT_VERIFIED  # from the future
    stamp = int(now) - 10
    assert verifier.check(Claim("alice", sign("alice", stamp).replace(f":{stamp}", f":{stamp + 1}"))) == NOT_VERIFIED
    assert verifier.sign("alice", stamp) == sign("alice", stamp)
    # Without a TTL both forms verify; upper-case hex is the same hash.
    plain = IdentityVerifier(SECRET)
    assert plain.check(Claim("alice", sign("alice").upper())) is None
    assert plain.check(Claim("alice", sign("alice", stamp))) is None
    assert plain.check(Claim("al\x00ice", sign("al\x00ice"))) == NOT_VERIFIED  # control characters: no
    assert plain.check(Claim("x" * 257, sign("x" * 257))) == NOT_VERIFIED


async def test_an_expired_signature_is_anonymous_with_a_reload_hint() -> None:
    channels = {"web": {"type": "web", "identity_secret": SECRET, "identity_ttl": 60}}
    async with running_gateway(channels) as gw, aiohttp.ClientSession() as http:
        s = Site(gw, http)
        old = int(time.time()) - 120
        events = await s.chat("some-session", "hi", user="alice", user_hash=sign("alice", old))
        assert answer_text(events).startswith(EXPIRED)
        fresh = await s.chat("some-session", "hi", user="alice", user_hash=sign("alice", int(time.time())))
        assert fresh[-1]["messageMetadata"]["verified"] is True


async def test_embed_js_is_served_for_other_sites_with_the_channels_title() -> None:
    shop = "https://shop.example.com"
    channels = {"web": {"type": "web", "title": 'Acme "support" </script>', "allowed_origins": [shop],
                        "greeting": ['Hi <b>"there"</b>'], "suggested_prompts": ["Where's my order?"]}}
    async with running_gateway(channels) as gw, aiohttp.ClientSession() as http:
        async with http.get(f"{gw.url}/chat/web/embed.js", headers={"Origin": shop}) as resp:
            script = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/javascript"
            assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Access-Control-Allow-Origin"] == shop
            etag = resp.headers["ETag"]
        assert '{"title": "Acme \\"support\\" </script>"}' in script  # a JSON literal, not script text
        async with http.get(f"{gw.url}/chat/web/embed.js", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
        async with http.get(f"{gw.url}/chat/web/") as resp:
            page = await resp.text()
            assert f"frame-ancestors 'self' {shop}" in resp.headers["Content-Security-Policy"]
        # Site text reaches the page only as escaped JSON in attributes, never as markup.
        assert 'data-greeting="[&quot;Hi &lt;b&gt;\\&quot;there\\&quot;&lt;/b&gt;&quot;]"' in page
        assert "data-prompts=\"[&quot;Where&#x27;s my order?&quot;]\"" in page
        async with http.get(f"{gw.url}/chat/web/static/frame.js") as resp:
            assert resp.status == 200
        # A listed site's own front end may read a signed visitor's history (CORS, with the headers).
        async with http.options(f"{gw.url}/chat/web/history", headers={
                "Origin": shop, "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-switchboard-user-id, x-switchboard-user-hash"}) as pre:
            assert pre.status == 204 and pre.headers["Access-Control-Allow-Methods"] == "GET, OPTIONS"
            assert "X-Switchboard-User-Hash" in pre.headers["Access-Control-Allow-Headers"]
        async with http.get(f"{gw.url}/chat/web/history", params={"sessionId": "session-x1"},
                            headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403


@pytest.mark.parametrize("bad", [
    {"greeting": ["hi"] * 6}, {"greeting": [""]}, {"suggested_prompts": ["x" * 201]}, {"identity_ttl": 0},
])
def test_widget_settings_are_checked(bad: dict[str, Any]) -> None:
    from channels.web import WebChannel
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError):
        WebChannel.validate("web", {"type": "web", **bad})


async def test_history_is_empty_once_the_conversation_idled_out_as_the_next_message_would_see_it(site: Site) -> None:
    await site.chat("laptop-session", "old news", user="alice")
    before = await site.history("laptop-session", user="alice")
    assert [m["role"] for m in before["messages"]] == ["user", "assistant"]
    store = site.gw.services.store
    key = "web:u:alice"
    state = await store.get_conversation(key)
    assert state is not None
    state.updated_at -= site.gw.settings.gateway.conversation_ttl + 1  # idle for longer than the TTL
    await store.put_conversation(key, state)
    assert (await site.history("laptop-session", user="alice"))["messages"] == []
    fresh = await site.chat("laptop-session", "new start", user="alice")
    assert answer_text(fresh).endswith("This is message 1 of this conversation.")
