"""What every Meta webhook shares (Messenger, Instagram, WhatsApp Cloud API).

Meta subscribes a callback URL with a ``GET`` handshake (``hub.mode=subscribe``,
``hub.verify_token``, ``hub.challenge``: echo the challenge when the token matches) and signs
every ``POST`` with ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with the
app secret>``. One implementation of both, so the channels cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import ClassVar, TypeVar

import pydantic
from aiohttp import web

from gateway.channel import Channel, ChannelSettings, InboundRequest
from gateway.errors import WebhookRejected

SIGNATURE_HEADER = "X-Hub-Signature-256"


class HubSettings(ChannelSettings):
    """The keys of Meta's webhook subscription, shared by every Meta channel."""

    app_secret: str = pydantic.Field(min_length=1, repr=False)
    verify_token: str = pydantic.Field(min_length=1, repr=False)


def signature_matches(body: bytes, header: str, app_secret: str) -> bool:
    """True when ``header`` is Meta's ``X-Hub-Signature-256`` of ``body``."""
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    # The header's raw bytes: aiohttp keeps bytes that are not UTF-8 as surrogates.
    return hmac.compare_digest(header.strip().lower().encode("utf-8", "surrogateescape"), expected.encode())


HubS = TypeVar("HubS", bound=HubSettings)


class HubWebhookChannel(Channel[HubS]):
    """A channel whose webhook Meta subscribes and signs: the handshake route and the check."""

    #: the status a missing or wrong signature gets (SPEC allows 401 or 403)
    bad_signature_status: ClassVar[int] = 403

    def routes(self) -> list[web.RouteDef]:
        return [web.get(self.webhook_path, self.handle_verification, allow_head=False), *super().routes()]

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        return [("Callback URL", public_url.rstrip("/") + self.webhook_path)]

    async def handle_verification(self, request: web.Request) -> web.Response:
        """Meta's subscription handshake: echo ``hub.challenge`` when the verify token matches."""
        query = request.query
        token = query.get("hub.verify_token", "")
        if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            token.encode(), self.settings.verify_token.encode()
        ):
            raise WebhookRejected(403, "verification failed: wrong hub.mode or hub.verify_token")
        return web.Response(text=query.get("hub.challenge", ""), content_type="text/plain")

    async def verify(self, request: InboundRequest) -> None:
        header = request.headers.get(SIGNATURE_HEADER, "")
        if not signature_matches(request.body, header, self.settings.app_secret):
            raise WebhookRejected(self.bad_signature_status, f"missing or wrong {SIGNATURE_HEADER}")
