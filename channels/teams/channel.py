"""The Teams channel: Bot Framework activities in, Bot Connector calls out; see docs/setup/teams.md."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pydantic
from microsoft_agents.activity import Activity

from channels.teams import activities, messages
from channels.teams.auth import AppToken, InboundAuth
from channels.teams.connector import Connector
from channels.teams.desk import TeamsDesk
from channels.teams.markup import to_teams
from channels.teams.reply import StreamingReply, editing_reply
from channels.teams.settings import TeamsSettings
from gateway.channel import Channel, InboundRequest, Progress, Reply, Services, WebhookResult
from gateway.desk import thread_key
from gateway.errors import ChannelError, WebhookRejected
from gateway.events import InboundEvent

#: how long the answer behind a Teams message can still be rated (seconds)
ANSWER_TTL = 30 * 24 * 3600.0
_JSON = "application/json"


class TeamsChannel(Channel[TeamsSettings]):
    """A bot in Microsoft Teams (an Azure Bot registration); it can also be the support desk."""

    type = "teams"
    Settings = TeamsSettings
    max_text_length = 8000

    def __init__(self, name: str, settings: TeamsSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        self.auth = InboundAuth(settings, lambda: self.services.http)
        self.token = AppToken(settings, lambda: self.services.http)
        self.connector = Connector(self.token)
        self._service_url: str | None = None

    async def initialize(self) -> None:
        # The SDK's connector logs every request at INFO, and each refusal at ERROR before we
        # decide what it means (a 429 is waited out, a 404 on an edit reposts): ours say it once.
        logging.getLogger("microsoft_agents").setLevel(logging.CRITICAL)

    async def shutdown(self) -> None:
        await self.connector.close()

    def describe(self) -> str:
        tenancy = f"single-tenant {self.settings.tenant_id}" if self.settings.tenant_id else "multi-tenant"
        return f"Teams bot {self.settings.app_id} ({tenancy}), proactive messages via {self.settings.api_base}"

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        return [("Azure Bot messaging endpoint", public_url.rstrip("/") + self.webhook_path),
                ("Teams app package", f"switchboard teams manifest {self.name} --out {self.name}-app.zip")]

    def support_desk(self) -> TeamsDesk:
        return TeamsDesk(self)

    # -- inbound ---------------------------------------------------------------------------------
    async def verify(self, request: InboundRequest) -> None:
        body = request.json()
        if not isinstance(body, dict):
            raise WebhookRejected(400, "not a Bot Framework activity")
        await self.auth.check(request.headers.get("Authorization", ""), body)

    async def parse(self, request: InboundRequest) -> WebhookResult:
        try:
            activity = Activity.model_validate(request.json())
        except pydantic.ValidationError as exc:
            raise WebhookRejected(400, f"malformed activity: {exc.error_count()} problem(s)") from None
        try:
            return await self._route(activity)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            # The SDK's helpers (mentions) trust fields its model leaves loose: an odd entity must
            # be the sender's 400, not our 500.
            raise WebhookRejected(400, f"malformed activity: {type(exc).__name__}") from exc

    async def _route(self, activity: Activity) -> WebhookResult:
        await self._learn_service_url(activity)
        if activity.type == "message":
            return WebhookResult(events=await self._message(activity))
        if activity.type == "conversationUpdate":
            greeting = activities.greeting_event(self.name, activity)
            return WebhookResult(events=[greeting] if greeting else [])
        if activity.type == "invoke":
            return await self._invoke(activity)
        return WebhookResult()

    async def _message(self, activity: Activity) -> list[InboundEvent]:
        at = activities.where(activity)
        if at is not None and at.type == "channel" and at.thread:
            conversation = await self.services.store.get_value(thread_key(self.name, at.place, at.thread))
            if conversation is not None:  # a staff reply in a handoff thread
                staff = activities.message_event(self.name, activity, addressed=True)
                return [replace(staff, meta={**staff.meta, "handoff": conversation})] if staff else []
        event = activities.message_event(self.name, activity)
        return [event] if event else []

    async def _invoke(self, activity: Activity) -> WebhookResult:
        if activity.name == "message/submitAction":
            vote = activities.feedback_loop(activity)
            event = None
            if vote is not None:
                answer_id, feedback = vote
                message_id = await self.services.store.get_value(self._answer_key(activity, answer_id))
                if message_id:
                    event = activities.card_action(self.name, activity, message_id, feedback)
            return WebhookResult(events=[event] if event else [], body="{}", content_type=_JSON)
        if activity.name == "adaptiveCard/action":
            event = activities.card_action(self.name, activity)
            text = {"feedback": "Thanks for your feedback.", "retry": "Trying again…"}.get(
                event.kind if event else "", "This button no longer works.")
            return WebhookResult(events=[event] if event else [], content_type=_JSON,
                                 body=json.dumps(messages.invoke_answer(text)))
        return WebhookResult(body="{}", content_type=_JSON)

    async def _learn_service_url(self, activity: Activity) -> None:
        """Proactive messages (the desk) go where Teams last called us from (its regional service)."""
        url = activity.service_url
        if url and url != self._service_url:
            self._service_url = url
            await self.services.store.set_value(f"teams:{self.name}:service_url", url)

    async def service_url(self) -> str:
        if self._service_url is None:
            self._service_url = await self.services.store.get_value(f"teams:{self.name}:service_url")
        return self._service_url or self.settings.service_url

    # -- outbound --------------------------------------------------------------------------------
    def render(self, markdown: str) -> str:
        return to_teams(markdown)

    def open_reply(self, event: InboundEvent, progress: Progress) -> Reply:
        resumed_editing = bool(progress.data.get("messages"))
        if self.settings.streaming and event.reply.get("type") == "personal" and not resumed_editing:
            return StreamingReply(self, event, progress)
        return editing_reply(self, event, progress)

    async def send_text(self, event: InboundEvent, text: str) -> str | None:
        return await self.connector.send(event.reply["service_url"], event.reply["conversation_id"],
                                         messages.plain(text)) or None

    async def typing(self, event: InboundEvent) -> None:
        try:
            await self.connector.send(event.reply["service_url"], event.reply["conversation_id"], {"type": "typing"})
        except ChannelError as exc:
            self.log.debug("typing indicator failed: %s", exc)

    async def remember_answer(self, event: InboundEvent, activity_id: str, message_id: str | None) -> None:
        """Which agent answer a Teams message shows, for the feedback loop's vote on it."""
        if message_id and activity_id:
            key = f"teams:{self.name}:answer:{event.reply['conversation_id']}:{activity_id}"
            await self.services.store.set_value(key, message_id, ANSWER_TTL)

    def _answer_key(self, activity: Activity, answer_id: str) -> str:
        conversation = activity.conversation.id if activity.conversation else ""
        return f"teams:{self.name}:answer:{conversation}:{answer_id}"
