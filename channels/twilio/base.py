"""What every Twilio channel shares: settings basics, signature checks and signed sub-routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from gateway.channel import Channel, ChannelSettings, InboundRequest, read_inbound
from gateway.errors import WebhookRejected

SIGNATURE_HEADER = "X-Twilio-Signature"
DEFAULT_API_BASE = "https://api.twilio.com"
TWIML_CONTENT_TYPE = "text/xml"


class TwilioSettings(ChannelSettings):
    """Keys every Twilio channel takes."""

    account_sid: str
    auth_token: str


def form_params(request: InboundRequest) -> MultiDict[str]:
    """The form body with repeated names kept: Twilio signs every value, not just the last."""
    try:
        text = request.body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookRejected(400, "malformed form body") from exc
    return MultiDict(pairs)


def e164(address: str) -> str:
    """A Twilio address without its channel prefix: ``whatsapp:+1415...`` → ``+1415...``."""
    _, sep, number = address.partition(":")
    return number.strip() if sep else address.strip()


TS = TypeVar("TS", bound=TwilioSettings)


class TwilioChannel(Channel[TS]):
    """Base of the Twilio channels: every request is checked against ``X-Twilio-Signature``."""

    def public(self, path: str) -> str:
        """Absolute URL of one of our paths as Twilio must call it (and sign it)."""
        return self.services.settings.public_url.rstrip("/") + path

    async def verify(self, request: InboundRequest) -> None:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise WebhookRejected(403, f"missing {SIGNATURE_HEADER}")
        # Twilio signs the URL it was configured with; behind a TLS-terminating proxy that is the
        # public https URL, which the core rebuilt from ``public_url`` (never from the Host header).
        params = form_params(request)
        validator = RequestValidator(self.settings.auth_token)
        if not validator.validate(request.public_url, params, signature):
            raise WebhookRejected(403, f"bad {SIGNATURE_HEADER} for {request.public_url}")
        account = params.get("AccountSid")
        if account is not None and account != self.settings.account_sid:
            raise WebhookRejected(403, "webhook for another Twilio account")

    def signed_route(
        self, path: str, handler: Callable[[InboundRequest], Awaitable[str]]
    ) -> web.RouteDef:
        """``POST <path>`` answered with TwiML after the same signature check as the main webhook.

        ``WebhookRejected`` propagates to the core's middleware, as from the main webhook.
        """

        async def serve(request: web.Request) -> web.StreamResponse:
            inbound = await read_inbound(request, self.services.settings.public_url)
            await self.verify(inbound)
            return web.Response(text=await handler(inbound), content_type=TWIML_CONTENT_TYPE)

        return web.post(path, serve)
