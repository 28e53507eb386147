"""Twilio SMS and WhatsApp: signed webhook in, empty TwiML ack, answer through the Messages API."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pydantic
from aiohttp import web
from multidict import MultiDict
from twilio.twiml.messaging_response import MessagingResponse

from channels.twilio.base import (
    DEFAULT_API_BASE,
    TWIML_CONTENT_TYPE,
    TwilioChannel,
    TwilioSettings,
    e164,
    form_params,
)
from channels.twilio.rest import WHATSAPP_WINDOW_CLOSED, TwilioRejected, TwilioRest, WhatsAppWindowClosed
from gateway import media
from gateway.channel import InboundRequest, WebhookResult
from gateway.config import check_url
from gateway.errors import WebhookRejected
from gateway.events import Identity, InboundEvent
from gateway.media import Attachment, message_text

EMPTY_TWIML = str(MessagingResponse())
#: Twilio's Body limit for one message (SMS and WhatsApp alike)
BODY_LIMIT = 1600
#: Twilio answers these itself (opt-out, opt-in, help). "YES" is an opt-in keyword too, but only
#: after a STOP; in a conversation it is an ordinary answer, so it still reaches the agent.
KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
     "START", "UNSTOP", "HELP", "INFO"}
)
MAX_MEDIA = 10  # Twilio delivers at most 10 media items per message
_E164 = re.compile(r"\+[1-9][0-9]{5,14}")


class MessagingSettings(TwilioSettings):
    """``[channels.<name>]`` of ``twilio-sms`` and ``twilio-whatsapp``."""

    from_: str = pydantic.Field(alias="from")
    api_base: str = DEFAULT_API_BASE
    #: ask Twilio to report delivery failures (e.g. a closed WhatsApp window) to ``/status``
    status_callback: bool = True

    @pydantic.field_validator("api_base")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)


def is_keyword(body: str) -> bool:
    """True for the whole-message keywords Twilio's opt-out handling answers."""
    return body.strip().upper() in KEYWORDS


def describe_extras(form: MultiDict[str]) -> list[Attachment | str]:
    """Media and shared locations as lines the agent can read (links, not content).

    Twilio's media URLs carry no credential (unless the account turned on HTTP basic auth for
    media, which the agent cannot pass), so they are given as they are.
    """
    lines: list[Attachment | str] = []
    count = form.get("NumMedia", "0")
    for i in range(min(int(count), MAX_MEDIA) if count.isdigit() else 0):
        url = form.get(f"MediaUrl{i}")
        if url:
            mime = form.get(f"MediaContentType{i}") or None
            lines.append(Attachment(media.kind_of(mime), url, mime))
    try:
        lat, lon = float(form.get("Latitude", "")), float(form.get("Longitude", ""))
    except ValueError:
        return lines
    lines.append(media.location(lat, lon, form.get("Label") or form.get("Address") or None))
    return lines


class TwilioMessagingChannel(TwilioChannel[MessagingSettings]):
    """Shared by SMS and WhatsApp: they differ in the address prefix and the markup."""

    Settings = MessagingSettings
    max_text_length = BODY_LIMIT
    number_parts = True
    #: how Twilio writes this channel's addresses ("whatsapp:+1…"); empty for SMS
    prefix: ClassVar[str] = ""

    @property
    def sender(self) -> str:
        """The configured ``from`` as Twilio wants it on this channel."""
        number = e164(self.settings.from_)
        return f"{self.prefix}{number}" if self.prefix else self.settings.from_.strip()

    def describe(self) -> str:
        return f"{self.type} from {e164(self.settings.from_)} via {self.settings.api_base}"

    @property
    def status_path(self) -> str:
        return f"{self.webhook_path}/status"

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        base = public_url.rstrip("/")
        return [("A message comes in (HTTP POST)", base + self.webhook_path),
                ("status callback (set automatically on each reply)", base + self.status_path)]

    def routes(self) -> list[web.RouteDef]:
        return [*super().routes(), self.signed_route(self.status_path, self._status)]

    # -- inbound ---------------------------------------------------------------------------------
    async def parse(self, request: InboundRequest) -> WebhookResult:
        form = form_params(request)
        sid = form.get("MessageSid") or form.get("SmsSid")
        sender = form.get("From", "")
        if not sid or not sender:
            raise WebhookRejected(400, "not a Twilio message webhook (MessageSid/From missing)")
        ack = WebhookResult(body=EMPTY_TWIML, content_type=TWIML_CONTENT_TYPE)
        if "MessageStatus" in form and "Body" not in form:
            # A delivery report sent to the main URL (a console "status callback" field set to it).
            await self._status(request)
            return ack
        body = form.get("Body", "").strip()
        if is_keyword(body):
            # Twilio already answered and updated the opt-out list; the agent must not reply too.
            self.log.info("message %s is the keyword %r, left to Twilio's opt-out handling", sid, body)
            return ack
        text = message_text(body, describe_extras(form))
        if not text:
            return ack
        number = e164(sender)
        meta: dict[str, Any] = {}
        if form.get("ProfileName"):
            meta["profile_name"] = form["ProfileName"]
        ack.events.append(
            InboundEvent(
                channel=self.name,
                key=sid,
                identity=Identity(self.type, "", number),
                scope=number,
                text=text,
                reply={"to": sender},
                meta=meta,
            )
        )
        return ack

    async def _status(self, request: InboundRequest) -> str:
        """Delivery reports: failures after Twilio accepted a message arrive only here."""
        form = form_params(request)
        status = form.get("MessageStatus") or form.get("SmsStatus") or ""
        if status in ("failed", "undelivered"):
            code = form.get("ErrorCode", "")
            self._delivery_failed(int(code) if code.isdigit() else None, form.get("To", ""),
                                  f"message {form.get('MessageSid', '?')} {status}")
        return EMPTY_TWIML

    # -- outbound --------------------------------------------------------------------------------
    finds_sent = True

    def _rest(self) -> TwilioRest:
        return TwilioRest(self.services.http, self.settings.api_base, self.settings.account_sid,
                          self.settings.auth_token, self.pacer)

    async def send_text(self, event: InboundEvent, text: str) -> str | None:
        params = {"To": str(event.reply["to"]), "From": self.sender, "Body": text}
        if self.settings.status_callback:
            params["StatusCallback"] = self.public(self.status_path)
        try:
            created = await self._rest().create_message(params)
        except WhatsAppWindowClosed as exc:
            # Not retried: the core counts it under delivery_failures{reason="WhatsAppWindowClosed"}.
            self._log_window_closed(params["To"], str(exc))
            raise
        sid = created.get("sid")
        return str(sid) if sid else None

    async def find_sent(self, event: InboundEvent, text: str, *, since: float) -> str | None:
        """A part a crash interrupted: Twilio's Messages list (To, From, DateSent) with our body."""
        return await self._rest().find_message(to=str(event.reply["to"]), from_=self.sender, body=text,
                                               since=since)

    def _delivery_failed(self, code: int | None, to: str, detail: str) -> None:
        """A failure reported by status callback, where the core cannot see it: log and count."""
        if code == WHATSAPP_WINDOW_CLOSED:
            self._log_window_closed(to, detail)
            reason = WhatsAppWindowClosed.__name__
        else:
            self.log.warning("message to %s failed at Twilio (error %s): %s", to, code or "?", detail)
            reason = TwilioRejected.__name__
        self.services.metrics.delivery_failures.labels(self.name, reason).inc()

    def _log_window_closed(self, to: str, detail: str) -> None:
        self.log.warning(
            "reply to %s not delivered: outside WhatsApp's 24-hour window (Twilio error 63016); "
            "only approved templates can reach this user until they write again (%s)", to, detail,
        )


class TwilioSmsChannel(TwilioMessagingChannel):
    """``type = "twilio-sms"``: plain text, Markdown stripped, links kept as URLs."""

    type = "twilio-sms"


class TwilioWhatsAppChannel(TwilioMessagingChannel):
    """``type = "twilio-whatsapp"``: WhatsApp styles (``*bold*``, ``_italic_``, ``~strike~``)."""

    type = "twilio-whatsapp"
    prefix = "whatsapp:"

    def render(self, markdown: str) -> str:
        from gateway.markdown import to_whatsapp

        return to_whatsapp(markdown)
