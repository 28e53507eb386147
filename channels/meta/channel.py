"""Facebook Messenger and Instagram: one base, two types (``messenger``, ``instagram``).

Inbound: the ``GET`` verification handshake and ``POST`` events signed with
``X-Hub-Signature-256`` (:mod:`channels.meta.webhook`, shared with WhatsApp). Outbound: the Send
API with ``messaging_type: RESPONSE``, plain text split at sentence boundaries to the platform's
limit, ``typing_on`` while the agent works, and 👍/👎 quick replies under each answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pydantic

from channels.meta.events import events_from_payload, feedback_payload
from channels.meta.graph import SendApi, attachment_url
from channels.meta.media import parse_reference
from channels.meta.webhook import HubSettings, HubWebhookChannel
from gateway.channel import (
    Answer,
    BufferedReply,
    InboundRequest,
    Progress,
    Reply,
    WebhookResult,
)
from gateway.config import check_url
from gateway.errors import ChannelError, ChannelPermanentError, WebhookRejected
from gateway.events import InboundEvent
from gateway.media_links import MediaSource
from gateway.text import split_text


class MetaSettings(HubSettings):
    """``[channels.<name>]`` keys of a ``messenger`` or ``instagram`` channel."""

    page_access_token: str = pydantic.Field(min_length=1, repr=False)
    api_base: str = "https://graph.facebook.com/v21.0"
    #: offer 👍/👎 quick replies under each answer
    feedback_buttons: bool = True

    @pydantic.field_validator("api_base")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value).rstrip("/")


class MetaChannel(HubWebhookChannel[MetaSettings]):
    """What Messenger and Instagram share; subclasses name the type, payload object and limits."""

    Settings = MetaSettings
    #: the webhook payload's ``object`` this channel answers
    webhook_object: ClassVar[str] = ""
    #: platform label for humans
    label: ClassVar[str] = ""
    #: a byte limit on top of the character limit, where the platform counts bytes
    max_text_bytes: ClassVar[int | None] = None

    # -- inbound ---------------------------------------------------------------------------------
    async def parse(self, request: InboundRequest) -> WebhookResult:
        body = request.json()
        if not isinstance(body, dict):
            raise WebhookRejected(400, "not a Meta webhook payload")
        if body.get("object") != self.webhook_object:
            # Another product's events (e.g. page feed): acknowledged, or Meta retries them.
            self.log.info("ignoring webhook object %r", body.get("object"))
            return WebhookResult(body="EVENT_RECEIVED")
        events = events_from_payload(body, channel=self.name, channel_type=self.type, link=self._media_link)
        return WebhookResult(events=events, body="EVENT_RECEIVED")

    def _media_link(self, ref: str) -> str:
        return self.services.media.link(self.name, ref)

    async def resolve_media(self, ref: str, *, stale: bool = False) -> MediaSource:
        """The CDN URL from the webhook; once it has expired, a fresh one from Graph."""
        try:
            url, mid, index = parse_reference(ref)
        except (ValueError, KeyError, TypeError):
            raise ChannelPermanentError("not a Meta media reference") from None
        if not stale:
            return MediaSource(url)
        return MediaSource(await attachment_url(self.services.http, self.settings.api_base,
                                                self.settings.page_access_token, mid, index))

    # -- outbound --------------------------------------------------------------------------------
    @property
    def api(self) -> SendApi:
        return SendApi(self.services.http, self.settings.api_base, self.settings.page_access_token, self.pacer)

    def split(self, rendered: str) -> list[str]:
        limit = self.max_text_length
        parts = split_text(rendered, limit)
        while self.max_text_bytes and any(len(p.encode()) > self.max_text_bytes for p in parts):
            limit = limit * 4 // 5  # wide characters: fewer of them per message
            parts = split_text(rendered, limit)
        return parts

    def open_reply(self, event: InboundEvent, progress: Progress) -> Reply:
        return MetaReply(self, event, progress)

    async def typing(self, event: InboundEvent) -> None:
        try:
            await self.api.post({"recipient": recipient(event), "sender_action": "typing_on"})
        except ChannelError as exc:
            self.log.debug("typing_on failed: %s", exc)

    async def send_text(self, event: InboundEvent, text: str) -> str | None:
        return await self.send_message(event, text)

    async def send_message(
        self, event: InboundEvent, text: str, quick_replies: list[dict[str, str]] | None = None
    ) -> str | None:
        """One Send API text message, as a response to the user's message; returns its ``message_id``."""
        message: dict[str, Any] = {"text": text}
        if quick_replies:
            message["quick_replies"] = quick_replies
        sent = await self.api.post(
            {"recipient": recipient(event), "messaging_type": "RESPONSE", "message": message}
        )
        message_id = sent.get("message_id")
        return str(message_id) if message_id else None

    def describe(self) -> str:
        return f"{self.label} via the Graph Send API ({self.settings.api_base})"


def recipient(event: InboundEvent) -> dict[str, str]:
    """Send API ``recipient``: the page-scoped id, or the Chat Plugin guest's ``user_ref``."""
    if event.reply.get("user_ref"):
        return {"user_ref": str(event.reply["user_ref"])}
    return {"id": str(event.reply["recipient"])}


class MetaReply(BufferedReply):
    """Buffered delivery whose last part carries the 👍/👎 quick replies."""

    channel: MetaChannel

    async def send_part(self, text: str, answer: Answer, *, last: bool) -> str | None:
        buttons = None
        if last and answer.message_id and self.channel.settings.feedback_buttons:
            buttons = [
                {
                    "content_type": "text",
                    "title": title,
                    "payload": feedback_payload(sign, answer.message_id, answer.conversation_id),
                }
                for sign, title in (("+", "👍"), ("-", "👎"))
            ]
        return await self.channel.send_message(self.event, text, buttons)

    async def fail(self, message: str) -> None:
        # Not through finish(): parts of a broken answer may already count as sent.
        await self.channel.send_message(self.event, message)


class MessengerChannel(MetaChannel):
    """A Facebook Page's Messenger inbox."""

    type = "messenger"
    webhook_object = "page"
    label = "Facebook Messenger"
    max_text_length = 2000


class InstagramChannel(MetaChannel):
    """An Instagram professional account's inbox (linked to a Facebook Page)."""

    type = "instagram"
    webhook_object = "instagram"
    label = "Instagram"
    max_text_length = 1000
    max_text_bytes = 1000
