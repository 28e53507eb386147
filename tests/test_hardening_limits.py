"""Limits a hostile client meets: body size and time, concurrency per address, session ids, CORS, CSP.

Sizes are proven with a raw socket, so the client can lie about ``Content-Length`` and trickle
bytes the way an attacker would; "nothing processed" is what the emulator recorded: nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import aiohttp
import pytest

import channels.web.channel
import gateway.channel
from adapters.emulator import Emulator
from gateway.events import Identity
from gateway.identity import user_id_for
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, message_params
from tests.test_web_channel import answer_text, read_ui_stream

MIB = 1024 * 1024
ORIGIN = "https://shop.example.com"


@contextlib.asynccontextmanager
async def raw(gw: GatewayUnderTest) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def status_of(reader: asyncio.StreamReader) -> int:
    line = await asyncio.wait_for(reader.readline(), 30)
    return int(line.split()[1])


TWILIO = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
CHANNELS = {
    "sms": {"type": "twilio-sms", "from": "+15557654321", "api_base": "http://127.0.0.1:9", **TWILIO},
    "phone": {"type": "twilio-voice", **TWILIO},
    "web": {"type": "web"},
}
#: the core's webhook route and a channel's own signed sub-route: both read bodies through read_inbound
WEBHOOKS = ["/webhooks/sms", "/webhooks/sms/status", "/webhooks/phone/gather"]


@pytest.fixture
async def gw() -> AsyncIterator[GatewayUnderTest]:
    async with running_gateway(CHANNELS) as gateway:
        yield gateway


@pytest.mark.parametrize("path", [*WEBHOOKS, "/chat/web/messages"])
async def test_a_lying_content_length_is_413_before_any_of_the_body_is_read(gw: GatewayUnderTest, path: str) -> None:
    """10 GiB announced, 10 bytes sent: the answer comes at once, without waiting for the rest."""
    async with raw(gw) as (reader, writer):
        writer.write(head(path, {"Content-Type": "application/json", "Content-Length": str(10 * 1024 * MIB)}))
        writer.write(b'{"a": "b"}')
        await writer.drain()
        assert await status_of(reader) == 413
    assert gw.emulator.requests == []


@pytest.mark.parametrize("path", WEBHOOKS)
async def test_a_chunked_body_is_cut_off_once_it_passes_1_mib(gw: GatewayUnderTest, path: str) -> None:
    """No Content-Length to refuse: the gateway reads up to the limit, answers 413 and stops."""
    sent = 0
    async with raw(gw) as (reader, writer):
        writer.write(head(path, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
        answer = asyncio.ensure_future(status_of(reader))
        chunk = b"x" * (64 * 1024)
        with contextlib.suppress(ConnectionError):
            while not answer.done() and sent < 8 * MIB:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                sent += len(chunk)
                await asyncio.sleep(0.005)
        status = await answer
    assert status == 413
    # The server stopped reading soon after the limit (what it read, plus socket buffers in flight).
    assert sent < 4 * MIB, sent
    assert gw.emulator.requests == []


@pytest.mark.parametrize("path", ["/webhooks/sms", "/chat/web/messages"])
async def test_a_body_trickled_byte_by_byte_times_out_with_408(
    gw: GatewayUnderTest, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.channel, "BODY_READ_TIMEOUT", 0.5)
    monkeypatch.setattr(channels.web.channel, "BODY_READ_TIMEOUT", 0.5)
    async with raw(gw) as (reader, writer):
        writer.write(head(path, {"Content-Type": "application/json", "Content-Length": "1000"}))
        answer = asyncio.ensure_future(status_of(reader))
        with contextlib.suppress(ConnectionError):
            while not answer.done():
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        assert await answer == 408
    assert gw.emulator.requests == []


# -- web chat: concurrency per client address --------------------------------------------------
async def _open_stream(http: aiohttp.ClientSession, url: str, session: str,
                       headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    return await http.post(url, json={"sessionId": session, "message": "long 600"}, headers=headers or {})


@pytest.mark.slow
async def test_answers_in_progress_per_client_address_are_capped_and_spoofed_forwarding_does_not_help() -> None:
    slow = Emulator(token_delay=0.02)
    web = {"web": {"type": "web", "max_concurrent_per_client": 2}}
    async with running_gateway(web, emulator=slow) as gw, aiohttp.ClientSession() as http:
        url = f"{gw.url}/chat/web/messages"
        streams = [await _open_stream(http, url, f"session-cap-{n}") for n in range(2)]
        for stream in streams:
            assert stream.status == 200
            await stream.content.readuntil(b"text-delta")  # both answers are in progress
        chats_before = len(gw.emulator.requests)
        for spoof in ({}, {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "10.0.0.1, 203.0.113.8"}):
            third = await _open_stream(http, url, "session-cap-3", spoof)
            assert third.status == 429, spoof
            assert third.headers["Retry-After"] == "1"
            assert (await third.json())["error"]["code"] == "too_many_requests"
        assert len(gw.emulator.requests) == chats_before  # refused before the agent was asked
        for stream in streams:
            assert (await stream.read()).rstrip().endswith(b"data: [DONE]")
            stream.release()
        after = await _open_stream(http, url, "session-cap-3")
        assert after.status == 200
        await after.read()
        after.release()


# -- web chat: session ids ---------------------------------------------------------------------
@pytest.mark.parametrize("session", [
    "short", "x" * 65, "has space-in-it", "dots.are.out", "slash/../../x", "plus+15551230001", "emoji-\U0001f600-1",
    "", "new\nline-abcdef", "twilio-sms..-2b15551230001",
])
async def test_an_invalid_session_id_is_400_and_never_reaches_the_agent(gw: GatewayUnderTest, session: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            f"{gw.url}/chat/web/messages", json={"sessionId": session, "message": "hi"}) as resp:
        assert resp.status == 400 and resp.content_type == "application/json"
        assert (await resp.json())["error"]["code"] == "invalid_session_id"
    assert gw.emulator.requests == []


async def test_a_session_id_cannot_reach_another_channels_person() -> None:
    """A web visitor who names their session after an SMS user's id is still only themselves."""
    async with FakeTwilio() as twilio:
        sms = {"type": "twilio-sms", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": "+15557654321",
               "api_base": twilio.url}
        async with running_gateway({"sms": sms, "web": {"type": "web"}}) as gw, aiohttp.ClientSession() as http:
            user = "+15551230001"
            sms_user_id = user_id_for(Identity("twilio-sms", "", user))
            status, _, _ = await twilio.post(http, f"{gw.url}/webhooks/sms",
                                             message_params("my secret order 42", user, "+15557654321", "SMid1"))
            assert status == 200
            await gw.idle()
            # The closest a session id may come: the SMS user's id without its dots.
            lookalike = sms_user_id.replace(".", "_")
            async with http.post(f"{gw.url}/chat/web/messages",
                                 json={"sessionId": lookalike, "message": "what did I order?"}) as resp:
                assert resp.status == 200
                body = await resp.read()
            # A new conversation of its own, not the SMS one.
            assert answer_text(read_ui_stream(body)).endswith("message 1 of this conversation.")
            users = {r.json["userId"] for r in gw.emulator.requests if r.path.endswith("/chat") and "userId" in r.json}
            assert users == {sms_user_id, user_id_for(Identity("web", "web", lookalike))}
            assert all(u.startswith(("twilio-2dsms.", "web.web.")) for u in users)


# -- CORS ----------------------------------------------------------------------------------------
@pytest.fixture
async def cors_gw() -> AsyncIterator[GatewayUnderTest]:
    async with running_gateway({"web": {"type": "web", "allowed_origins": [ORIGIN]}}) as gateway:
        yield gateway


@pytest.mark.parametrize("origin", [
    "https://shop.example.com.evil.example", "https://evilshop.example.com", "http://shop.example.com",
    "https://shop.example.com:8443", "null", "https://evil.example", "https://shop.example.co",
    "https://sub.shop.example.com", "file://", "*",
])
async def test_an_origin_not_listed_gets_no_cors_and_no_answer(cors_gw: GatewayUnderTest, origin: str) -> None:
    url = f"{cors_gw.url}/chat/web/messages"
    async with aiohttp.ClientSession() as http:
        async with http.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}) as pre:
            assert pre.status == 403
            assert "Access-Control-Allow-Origin" not in pre.headers
        async with http.post(url, json={"sessionId": "session-cors1", "message": "hi"},
                             headers={"Origin": origin}) as resp:
            assert resp.status == 403
            assert "Access-Control-Allow-Origin" not in resp.headers
    assert cors_gw.emulator.requests == []


async def test_a_listed_origin_gets_exactly_its_own_cors_headers_and_never_credentials(
    cors_gw: GatewayUnderTest,
) -> None:
    url = f"{cors_gw.url}/chat/web/messages"
    async with aiohttp.ClientSession() as http:
        async with http.options(url, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}) as pre:
            assert pre.status == 204
            assert pre.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert pre.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
            assert "Access-Control-Allow-Credentials" not in pre.headers
        async with http.post(url, json={"sessionId": "session-cors2", "message": "hi"},
                             headers={"Origin": ORIGIN}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "Origin" in resp.headers["Vary"]
            assert "Access-Control-Allow-Credentials" not in resp.headers
            await resp.read()


# -- the page's Content-Security-Policy ---------------------------------------------------------
def csp(value: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for directive in filter(None, (d.strip() for d in value.split(";"))):
        name, *sources = directive.split()
        out[name] = sources
    return out


class _Inline(HTMLParser):
    """Finds what a strict CSP would block: inline scripts, inline styles, event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("inline <style>")
        self.problems += [f"{tag} {k}=" for k in names if k.startswith("on") or k == "style"]
        self.problems += [f"{tag} {k}=javascript:" for k, v in attrs
                          if v and v.strip().lower().startswith("javascript:")]


@pytest.mark.parametrize("path", ["/chat/web/", "/chat/web/static/chat.js", "/chat/web/static/chat.css"])
async def test_the_page_and_its_files_carry_a_strict_csp(gw: GatewayUnderTest, path: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{gw.url}{path}") as resp:
        assert resp.status == 200
        policy = csp(resp.headers["Content-Security-Policy"])
        body = await resp.text()
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', 'unsafe-eval', data: or hosts
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]  # no allowed_origins: nobody may frame the page
    for sources in policy.values():
        assert not {"*", "'unsafe-inline'", "'unsafe-eval'", "http:", "https:"} & set(sources)
    if path.endswith("/"):
        checker = _Inline()
        checker.feed(body)
        assert checker.problems == []
        assert not re.search(r"<script[^>]+src=\"(https?:)?//", body)  # only same-origin scripts


async def test_listed_origins_may_frame_the_page_but_nothing_else_loosens() -> None:
    async with running_gateway({"web": {"type": "web", "allowed_origins": [ORIGIN]}}) as gw, \
            aiohttp.ClientSession() as http, http.get(f"{gw.url}/chat/web/") as resp:
        policy = csp(resp.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == ["'self'", ORIGIN]
    assert policy["script-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]


async def test_a_title_with_markup_is_escaped_in_the_page() -> None:
    title = '<script>alert("x")</script>'
    async with running_gateway({"web": {"type": "web", "title": title}}) as gw, \
            aiohttp.ClientSession() as http, http.get(f"{gw.url}/chat/web/") as resp:
        body = await resp.text()
    assert title not in body and "&lt;script&gt;" in body
    checker = _Inline()
    checker.feed(body)
    assert checker.problems == []
