"""Signed, expiring media links: the agent follows them, the gateway fetches with the bot's token.

A platform's download URL often carries a secret (Telegram's ``/file/bot<token>/…``) or needs
one (Slack's ``url_private`` wants the bot token in a header), or expires (Meta's CDN links). The
agent therefore never sees those URLs. A channel hands :meth:`MediaLinks.link` an opaque
reference of its own (a Telegram ``file_id``, a Slack file URL); the agent receives::

    {public_url}/media/{channel}/{base64url(reference)}?exp={unix time}&sig={HMAC}

``GET`` on that URL checks the signature and the expiry, asks the channel's
:meth:`~gateway.channel.Channel.resolve_media` for the real source (URL and headers, token
included) and streams the platform's answer back. Nothing about the link is secret except the
HMAC key, so links may sit in the agent's history; they stop working after ``media_link_ttl``.

The HMAC key is ``gateway.media_secret`` when configured (use a ``${ENV}`` or ``file:``
reference), else a random key created once and kept in the state store, so every instance
sharing the store signs and checks alike and links survive restarts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp import web

from gateway.errors import ChannelError, StoreUnavailable, WebhookRejected
from gateway.store import KeyValueStore

log = logging.getLogger(__name__)

ROUTE = "/media/{channel}/{ref}"
#: the store value holding the generated key when ``gateway.media_secret`` is not set
SECRET_KEY = "gateway:media-secret"
_CLAIM_KEY = SECRET_KEY + ":claim"
#: response headers of the platform worth passing on (never cookies or auth challenges)
_PASSED_HEADERS = ("Content-Type", "Content-Length", "Content-Disposition", "Last-Modified", "ETag")
_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=10, sock_read=60)


@dataclass(frozen=True, slots=True)
class MediaSource:
    """Where a channel's media really is: the URL and headers to fetch it with (token included)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    #: shown to the agent's client as the file name, when the platform does not send one
    filename: str | None = None


class MediaResolver(Protocol):
    """What the proxy needs of a channel (every :class:`~gateway.channel.Channel` has it)."""

    async def resolve_media(self, ref: str, *, stale: bool = False) -> MediaSource:
        """The source of ``ref``; ``stale`` when the previous source answered 403/404/410."""
        ...


class MediaLinks:
    """Makes and checks signed media links for one gateway (all channels share the key)."""

    def __init__(self, key: bytes, public_url: str, ttl: float, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError("a media link key needs at least 16 bytes")
        self._key = key
        self._base = public_url.rstrip("/")
        self.ttl = ttl
        self._clock = clock

    def link(self, channel: str, ref: str) -> str:
        """A URL the agent can follow to fetch ``ref`` of ``channel`` until it expires."""
        opaque = base64.urlsafe_b64encode(ref.encode()).rstrip(b"=").decode()
        expires = int(self._clock() + self.ttl)
        return f"{self._base}/media/{channel}/{opaque}?exp={expires}&sig={self._sign(channel, opaque, expires)}"

    def check(self, channel: str, opaque: str, exp: str, sig: str) -> str:
        """The reference behind a link; :class:`WebhookRejected` when forged, altered or expired."""
        if not exp.isdigit() or not hmac.compare_digest(
            sig.encode("utf-8", "surrogateescape"), self._sign(channel, opaque, int(exp)).encode()
        ):
            raise WebhookRejected(403, "invalid media link signature")
        if int(exp) < self._clock():
            raise WebhookRejected(410, "media link expired")
        try:
            return base64.urlsafe_b64decode(opaque + "=" * (-len(opaque) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):  # signed, so only our own bug
            raise WebhookRejected(400, "malformed media link") from None

    def _sign(self, channel: str, opaque: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{channel}\n{opaque}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:24]).decode()


async def load_key(configured: str | None, store: KeyValueStore, wait: float = 10.0) -> bytes:
    """The HMAC key: the configured secret, else the store's (created once, by one instance)."""
    if configured:
        return hashlib.sha256(b"switchboard media links\n" + configured.encode()).digest()
    stored = await store.get_value(SECRET_KEY)
    if stored is None and await store.incr(_CLAIM_KEY, 60) == 1:
        # First start of the first instance: only the one whose claim counted 1 writes the key,
        # so instances starting together never sign with different keys.
        stored = secrets.token_urlsafe(32)
        await store.set_value(SECRET_KEY, stored)
    deadline = time.monotonic() + wait
    while stored is None:
        if time.monotonic() > deadline:
            raise StoreUnavailable("the media link key was claimed by another instance but never written")
        await asyncio.sleep(0.2)
        stored = await store.get_value(SECRET_KEY)
    return stored.encode()


async def serve_media(
    request: web.Request, links: MediaLinks, channels: Mapping[str, MediaResolver], http: aiohttp.ClientSession
) -> web.StreamResponse:
    """``GET /media/{channel}/{ref}``: check the link, fetch from the platform, stream it back."""
    name, opaque = request.match_info["channel"], request.match_info["ref"]
    ref = links.check(name, opaque, request.query.get("exp", ""), request.query.get("sig", ""))
    channel = channels.get(name)
    if channel is None:
        raise WebhookRejected(404, "no such channel")
    source = await _resolve(channel, ref, stale=False)
    upstream = await _open(http, source)
    if upstream.status in (403, 404, 410):
        upstream.release()
        fresh = await _resolve(channel, ref, stale=True)
        if fresh.url == source.url:
            raise WebhookRejected(404, "the platform no longer has this media")
        source, upstream = fresh, await _open(http, fresh)
    response: web.StreamResponse | None = None
    try:
        if upstream.status != 200:
            log.info("media fetch for %s answered %s", name, upstream.status)
            status = 404 if upstream.status in (403, 404, 410) else 502
            raise WebhookRejected(status, "the platform did not deliver this media")
        response = web.StreamResponse(headers=_passed(upstream.headers, source.filename))
        response.headers["Cache-Control"] = "private, max-age=300"
        response.headers["X-Content-Type-Options"] = "nosniff"
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(64 * 1024):
            await response.write(chunk)
        await response.write_eof()
        return response
    except (aiohttp.ClientError, TimeoutError):
        # Never str(exc): aiohttp quotes the URL, and the URL may hold the bot token.
        log.info("media download from %s broke off", name)
        if response is None or not response.prepared:
            raise WebhookRejected(502, "the platform did not deliver this media") from None
        response.force_close()  # headers are out: closing early is how the client learns it is cut short
        return response
    finally:
        upstream.release()


async def _resolve(channel: MediaResolver, ref: str, *, stale: bool) -> MediaSource:
    try:
        return await channel.resolve_media(ref, stale=stale)
    except ChannelError as exc:
        log.info("media lookup failed: %s", exc)
        raise WebhookRejected(404, "the platform no longer has this media") from None


async def _open(http: aiohttp.ClientSession, source: MediaSource) -> aiohttp.ClientResponse:
    try:
        return await http.get(source.url, headers=dict(source.headers), timeout=_FETCH_TIMEOUT,
                              allow_redirects=True)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("media fetch failed: %s", type(exc).__name__)  # the URL may hold the token
        raise WebhookRejected(502, "the platform did not deliver this media") from None


def _passed(headers: Mapping[str, str], filename: str | None) -> dict[str, str]:
    passed = {name: headers[name] for name in _PASSED_HEADERS if name in headers}
    if "Content-Encoding" in headers:
        passed.pop("Content-Length", None)  # aiohttp decompressed the body: the length changed
    passed.setdefault("Content-Type", "application/octet-stream")
    if filename and "Content-Disposition" not in passed:
        safe = "".join(c for c in filename if c.isprintable() and c not in '"\\')[:150]
        passed["Content-Disposition"] = f'inline; filename="{safe}"'
    return passed
