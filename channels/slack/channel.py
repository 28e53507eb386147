"""The Slack channel: Events API webhooks (or Socket Mode), threads, streaming answers, buttons."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from channels.slack.api import SlackApi, SlackRefused
from channels.slack.blocks import with_feedback_note
from channels.slack.desk import SlackDesk
from channels.slack.inbound import BotIdentity, Trigger, action_events, classify, message_event, thread_of
from channels.slack.reply import slack_reply
from channels.slack.settings import SlackSettings
from channels.slack.signature import verify_signature
from gateway import markdown
from gateway.channel import Channel, InboundRequest, Progress, Reply, Services, WebhookResult
from gateway.desk import thread_key
from gateway.errors import ChannelError, ChannelPermanentError, ConfigError, WebhookRejected
from gateway.events import InboundEvent
from gateway.media_links import MediaSource
from gateway.text import split_text


class SlackChannel(Channel[SlackSettings]):
    """One Slack app in one workspace; it can also be the support desk for human handoff."""

    type = "slack"
    Settings = SlackSettings
    max_text_length = 3900

    def __init__(self, name: str, settings: SlackSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        self.me = BotIdentity(user_id="", bot_id="", team_id="")
        self._api: SlackApi | None = None
        self._desk = SlackDesk(lambda: self.api)

    def support_desk(self) -> SlackDesk:
        """Handoff threads in a support channel of this workspace (``channels/slack/desk.py``)."""
        return self._desk

    @property
    def api(self) -> SlackApi:
        if self._api is None:
            raise ChannelError(f"Slack channel {self.name!r} is not initialized")
        return self._api

    # -- lifecycle -------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Learn our own user and bot ids (``auth.test``) so we never answer ourselves."""
        self._api = SlackApi(self.settings.bot_token, self.settings.api_base, self.services.http, pacer=self.pacer)
        try:
            await self._learn_identity()
        except SlackRefused as exc:
            raise ConfigError(f"channels.{self.name}.bot_token: Slack refused it ({exc.code})") from exc
        except ChannelError as exc:
            # Slack being briefly unreachable must not keep every other channel down.
            self.log.warning("Slack auth.test failed (%s); retrying when the first event arrives", exc)

    async def _learn_identity(self) -> None:
        auth = await self.api.call_patiently("auth.test")
        self.me = BotIdentity(
            user_id=str(auth.get("user_id", "")), bot_id=str(auth.get("bot_id", "")),
            team_id=str(auth.get("team_id", "")),
        )
        self.log.info("Slack bot user %s in team %s", self.me.user_id, self.me.team_id)

    @property
    def polls(self) -> bool:
        return self.settings.mode == "socket"

    async def run(self) -> None:
        """Socket Mode's receive loop (the Events API needs none: Slack calls the webhook)."""
        if self.settings.mode == "socket":
            from channels.slack.socket import run_socket_mode

            await run_socket_mode(self)

    def describe(self) -> str:
        how = "Socket Mode" if self.settings.mode == "socket" else "Events API webhook"
        return f"Slack app via {how}, Web API at {self.settings.api_base}"

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        if self.settings.mode == "socket":
            return []  # Slack is reached over an outbound WebSocket: nothing to paste
        url = public_url.rstrip("/") + self.webhook_path
        return [("Event Subscriptions request URL", url), ("Interactivity request URL", url)]

    # -- inbound ---------------------------------------------------------------------------------
    async def verify(self, request: InboundRequest) -> None:
        if not self.settings.signing_secret:
            raise WebhookRejected(403, "this Slack channel runs in Socket Mode and takes no webhooks")
        verify_signature(self.settings.signing_secret, request.headers, request.body)

    async def parse(self, request: InboundRequest) -> WebhookResult:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = request.form()
            if "payload" not in form:
                return WebhookResult()  # ssl_check and the like: acknowledge, nothing to do
            try:
                payload = json.loads(form["payload"])
            except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
                raise WebhookRejected(400, "malformed interactivity payload") from exc
            return WebhookResult(events=self.interaction_events(payload))
        body = request.json()
        if not isinstance(body, dict):
            raise WebhookRejected(400, "Slack body is not a JSON object")
        if body.get("type") == "url_verification":
            challenge = json.dumps({"challenge": str(body.get("challenge", ""))})
            return WebhookResult(body=challenge, content_type="application/json")
        if body.get("type") == "event_callback":
            return WebhookResult(events=await self.callback_events(body))
        return WebhookResult()

    async def callback_events(self, envelope: dict[str, Any]) -> list[InboundEvent]:
        """Events worth answering in an ``event_callback`` envelope (usually zero or one)."""
        event = envelope.get("event")
        if not isinstance(event, dict):
            raise WebhookRejected(400, "event_callback without an event")
        if not self.me.user_id:
            await self._learn_identity()  # start-up could not; failing here makes Slack retry
        trigger = classify(event, self.me)
        if trigger is None:
            return []
        channel = str(event.get("channel", ""))
        if trigger != "dm" and event.get("thread_ts") and event.get("thread_ts") != event.get("ts"):
            staff = await self._handoff_event(envelope, event, trigger)
            if staff is not None:
                return staff
        if trigger == "thread_reply" and await self.services.store.get_value(
            self._thread_key(channel, thread_of(event))
        ) is None:
            return []  # a thread we were never asked into
        inbound = message_event(self.name, envelope, event, trigger, self.me, self._media_link)
        if inbound is None:
            return []
        if trigger != "dm":
            # Replies in this thread are for us too, until it has been quiet for a conversation's lifetime.
            ttl = self.services.settings.gateway.conversation_ttl
            await self.services.store.set_value(self._thread_key(channel, thread_of(event)), "1", ttl)
        return [inbound]

    async def _handoff_event(
        self, envelope: dict[str, Any], event: dict[str, Any], trigger: Trigger
    ) -> list[InboundEvent] | None:
        """A staff message in a human-handoff thread: for the handoff, not for the agent (None: not one)."""
        key = thread_key(self.name, str(event.get("channel", "")), thread_of(event))
        conversation = await self.services.store.get_value(key)
        if conversation is None:
            return None
        inbound = message_event(self.name, envelope, event, trigger, self.me, self._media_link)
        return [] if inbound is None else [replace(inbound, meta={**inbound.meta, "handoff": conversation})]

    def _media_link(self, file_id: str) -> str:
        return self.services.media.link(self.name, file_id)

    async def resolve_media(self, ref: str, *, stale: bool = False) -> MediaSource:
        """A file's current private URL (``files.info``), fetched with the bot token in a header."""
        info = await self.api.read("files.info", file=ref)
        found = info.get("file")
        file: dict[str, Any] = found if isinstance(found, dict) else {}
        url = file.get("url_private_download") or file.get("url_private")
        if not isinstance(url, str) or not url:
            raise ChannelPermanentError("Slack gave no download URL for this file")
        name = file.get("name") if isinstance(file.get("name"), str) else None
        return MediaSource(url, {"Authorization": f"Bearer {self.settings.bot_token}"}, name)

    def interaction_events(self, payload: Any) -> list[InboundEvent]:
        if not isinstance(payload, dict):
            raise WebhookRejected(400, "interactivity payload is not a JSON object")
        return action_events(self.name, payload, self.me)

    def _thread_key(self, channel: str, thread_ts: str) -> str:
        return f"slack:{self.name}:thread:{channel}:{thread_ts}"

    # -- outbound --------------------------------------------------------------------------------
    def render(self, markdown_text: str) -> str:
        return markdown.to_mrkdwn(markdown_text)

    def split(self, rendered: str) -> list[str]:
        return split_text(rendered, self.settings.max_message_chars)

    def open_reply(self, event: InboundEvent, progress: Progress) -> Reply:
        resumed_as_update = bool(progress.data.get("slack", {}).get("ts")) and not progress.data["slack"].get(
            "native"
        )
        if self.settings.streaming == "native" and event.reply.get("thread_ts") and not resumed_as_update:
            from channels.slack.native import NativeStreamReply

            return NativeStreamReply(self, event, progress)
        return slack_reply(self, event, progress)

    async def send_text(self, event: InboundEvent, text: str) -> None:
        """One finished part as a message in the event's thread (used outside streaming)."""
        await self.api.call_patiently(
            "chat.postMessage", channel=event.reply["channel"], thread_ts=event.reply.get("thread_ts"), text=text
        )

    async def feedback_saved(self, event: InboundEvent) -> None:
        """Show under the answer that the rating was recorded (buttons stay, to change it)."""
        blocks = event.reply.get("blocks")
        if not blocks or not event.reply.get("ts"):
            return
        await self.api.call_patiently(
            "chat.update",
            channel=event.reply["channel"],
            ts=event.reply["ts"],
            text=event.reply.get("text") or "answer",
            blocks=with_feedback_note(blocks, str(event.meta.get("feedback")), event.identity.id),
        )
