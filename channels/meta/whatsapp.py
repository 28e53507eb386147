"""WhatsApp through Meta's Cloud API (``type = "whatsapp"``), no Twilio in between.

Inbound: Meta's webhook (the handshake and ``X-Hub-Signature-256`` of :mod:`channels.meta.webhook`;
a bad signature is a 401), read by :mod:`channels.meta.whatsapp_inbound`. Each message is one
event keyed by its ``wamid``, so Meta's redeliveries are answered once; ``statuses[]`` never
become turns, but a ``failed`` one is logged and counted.

Outbound (:mod:`channels.meta.cloud_api`): the person's message is marked read with the typing
indicator while the agent works (refreshed before WhatsApp's 25 s run out), then the answer in
WhatsApp's own styles, split at the 4,096-character text limit. The last part carries reply
buttons 👍 / 👎 / Try again; as an interactive message's body it holds at most 1,024
characters, so a longer last part gives its final paragraphs to the buttons' message.
"""

from __future__ import annotations

import time
from typing import Any

import pydantic

from channels.meta.cloud_api import (
    BUTTON_ID_LIMIT,
    INTERACTIVE_BODY_LIMIT,
    WINDOW_CLOSED,
    CloudApi,
    WhatsAppRejected,
    WhatsAppWindowClosed,
    window_closed_note,
)
from channels.meta.events import feedback_payload
from channels.meta.webhook import HubSettings, HubWebhookChannel
from channels.meta.whatsapp_inbound import IDENTITY_TYPE, OBJECT, FailedStatus, read_payload, retry_payload
from gateway.channel import (
    Answer,
    BufferedReply,
    InboundRequest,
    Progress,
    Reply,
    Services,
    WebhookResult,
)
from gateway.config import check_url
from gateway.errors import ChannelError, WebhookRejected
from gateway.events import Identity, InboundEvent
from gateway.media_links import MediaSource
from gateway.text import split_text

DEFAULT_API_VERSION = "v24.0"
TEXT_LIMIT = 4096
#: WhatsApp drops the typing indicator after 25 s; an answer still coming renews it before then
TYPING_RENEW = 20.0
#: how long a failed status is remembered, so Meta's redeliveries of it are not logged again
FAILED_SEEN_TTL = 7 * 24 * 3600.0
#: a closed window is a state of the person: logged once per person per hour, counted every time
WINDOW_NOTE_TTL = 3600.0


class WhatsAppSettings(HubSettings):
    """``[channels.<name>]`` keys of a ``whatsapp`` channel."""

    phone_number_id: str = pydantic.Field(pattern=r"^[0-9]{1,32}$")
    access_token: str = pydantic.Field(min_length=1, repr=False)
    api_version: str = pydantic.Field(DEFAULT_API_VERSION, pattern=r"^v[0-9]+\.[0-9]+$")
    api_base: str = "https://graph.facebook.com"
    #: offer 👍 / 👎 / Try again reply buttons under each answer
    feedback_buttons: bool = True

    @pydantic.field_validator("api_base")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value).rstrip("/")


class WhatsAppChannel(HubWebhookChannel[WhatsAppSettings]):
    """One WhatsApp Business phone number."""

    type = "whatsapp"
    Settings = WhatsAppSettings
    max_text_length = TEXT_LIMIT
    bad_signature_status = 401

    def __init__(self, name: str, settings: WhatsAppSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        self._foreign_logged: set[str] = set()

    def describe(self) -> str:
        s = self.settings
        return f"WhatsApp number id {s.phone_number_id} via the Cloud API ({s.api_base}/{s.api_version})"

    @property
    def api(self) -> CloudApi:
        s = self.settings
        return CloudApi(self.services.http, s.api_base, s.api_version, s.phone_number_id, s.access_token)

    # -- inbound ---------------------------------------------------------------------------------
    async def parse(self, request: InboundRequest) -> WebhookResult:
        body = request.json()
        if not isinstance(body, dict):
            raise WebhookRejected(400, "not a Meta webhook payload")
        if body.get("object") != OBJECT:
            self.log.info("ignoring webhook object %r", body.get("object"))
            return WebhookResult(body="EVENT_RECEIVED")
        batch = read_payload(body, channel=self.name, phone_number_id=self.settings.phone_number_id,
                             link=self.media_link)
        for number in batch.foreign - self._foreign_logged:
            self._foreign_logged.add(number)
            self.log.info("ignoring messages for phone number id %s (this channel is %s)",
                          number, self.settings.phone_number_id)
        for failed in batch.failed:
            await self._delivery_failed(failed)
        return WebhookResult(events=batch.events, body="EVENT_RECEIVED")

    def media_link(self, media_id: str) -> str:
        """The signed gateway link the agent gets for an inbound media item (its id is the reference)."""
        return self.services.media.link(self.name, media_id)

    async def resolve_media(self, ref: str, *, stale: bool = False) -> MediaSource:
        """Graph's download URL for the media id, always fresh (it lives five minutes), and the token
        the download needs: neither ever reaches the agent."""
        api = self.api
        return MediaSource(await api.media_url(ref), api.auth_headers)

    def _window_key(self, wa_id: str) -> str:
        return f"wa:window:{self.name}:{wa_id}"

    async def forget(self, identity: Identity) -> None:
        """The closed-window note's marker, which names the person's number."""
        if identity.channel_type == IDENTITY_TYPE and identity.namespace == self.settings.phone_number_id:
            await self.services.store.delete_value(self._window_key(identity.id))

    async def _delivery_failed(self, failed: FailedStatus) -> None:
        """A message WhatsApp accepted, then could not deliver: log once, count every time."""
        store, seen = self.services.store, f"wa:failed:{self.name}:{failed.wamid}"
        if await store.incr(seen, FAILED_SEEN_TTL) > 1:
            return  # Meta redelivered this status
        if failed.code == WINDOW_CLOSED:
            reason = WhatsAppWindowClosed.__name__
            if await store.incr(self._window_key(failed.recipient), WINDOW_NOTE_TTL) == 1:
                self.log.warning(window_closed_note(failed.recipient, f"message {failed.wamid}: {failed.reason}"))
        else:
            reason = WhatsAppRejected.__name__
            self.log.warning("message %s to %s failed at WhatsApp (error %s): %s",
                             failed.wamid, failed.recipient, failed.code or "?", failed.reason)
        self.services.metrics.delivery_failures.labels(self.name, reason).inc()

    # -- outbound --------------------------------------------------------------------------------
    def render(self, markdown: str) -> str:
        from gateway.markdown import to_whatsapp

        return to_whatsapp(markdown)

    def open_reply(self, event: InboundEvent, progress: Progress) -> Reply:
        return WhatsAppReply(self, event, progress)

    async def typing(self, event: InboundEvent) -> None:
        await self._mark_read(event, typing=True)

    async def feedback_saved(self, event: InboundEvent) -> None:
        await self._mark_read(event, typing=False)  # blue ticks on the tap: it was taken

    async def _mark_read(self, event: InboundEvent, *, typing: bool) -> None:
        wamid = event.reply.get("wamid")
        if not wamid:
            return  # a handoff relay or a notice: no message of theirs to mark
        try:
            await self.api.mark_read(str(wamid), typing=typing)
        except ChannelError as exc:
            self.log.debug("marking %s read failed: %s", wamid, exc)

    async def send_text(self, event: InboundEvent, text: str) -> str | None:
        return await self.send(event, {"type": "text", "text": {"body": text, "preview_url": False}})

    async def send(self, event: InboundEvent, message: dict[str, Any]) -> str | None:
        """Send one message to the person; its ``wamid``. (The Cloud API cannot list what was sent,
        so a part interrupted by a crash is sent again: ``finds_sent`` stays False.)"""
        to = str(event.reply["to"])
        try:
            return await self.api.send(to, message)
        except WhatsAppWindowClosed as exc:
            # Not retried: the core counts it under delivery_failures{reason="WhatsAppWindowClosed"}.
            self.log.warning(window_closed_note(to, str(exc)))
            raise

    def buttons(self, answer: Answer) -> list[dict[str, Any]]:
        """The reply buttons under ``answer``: 👍, 👎 and Try again (none when ids do not fit)."""
        if not answer.message_id or not self.settings.feedback_buttons:
            return []
        conversation = answer.conversation_id
        if len(retry_payload(answer.message_id, conversation)) > BUTTON_ID_LIMIT:
            conversation = None  # the core finds the conversation from the message id
        ids = [("👍", feedback_payload("+", answer.message_id, conversation)),
               ("👎", feedback_payload("-", answer.message_id, conversation)),
               ("Try again", retry_payload(answer.message_id, conversation))]
        if any(len(i) > BUTTON_ID_LIMIT for _, i in ids):
            return []
        return [{"type": "reply", "reply": {"id": i, "title": title}} for title, i in ids]


class WhatsAppReply(BufferedReply):
    """Buffered delivery: typing kept alive while the agent writes, buttons on the last part."""

    channel: WhatsAppChannel
    #: when the typing indicator was last shown (monotonic seconds)
    _typed_at: float = 0.0

    async def start(self) -> None:
        self._typed_at = time.monotonic()
        await self.channel.typing(self.event)

    async def update(self, text: str) -> None:
        if time.monotonic() - self._typed_at > TYPING_RENEW:
            await self.start()

    def parts(self, answer: Answer) -> list[str]:
        parts = super().parts(answer)
        if self.channel.buttons(answer) and parts and len(parts[-1]) > INTERACTIVE_BODY_LIMIT:
            last = parts.pop()
            tail = split_text(last, INTERACTIVE_BODY_LIMIT)[-1]
            head = last[: last.rfind(tail)].rstrip()
            parts += [head, tail] if head else [tail]
        return parts

    async def send_part(self, text: str, answer: Answer, *, last: bool) -> str | None:
        buttons = self.channel.buttons(answer) if last else []
        if buttons:
            return await self.channel.send(self.event, {"type": "interactive", "interactive": {
                "type": "button", "body": {"text": text}, "action": {"buttons": buttons}}})
        return await self.channel.send_text(self.event, text)

    async def fail(self, message: str) -> None:
        # Not through finish(): parts of a broken answer may already count as sent.
        await self.channel.send_text(self.event, message)
