"""Socket Mode: for workspaces whose gateway cannot be reached from the internet.

We connect out over a WebSocket (slack_sdk's SocketModeClient, app-level ``xapp-`` token) and
receive the same payloads the Events API and interactivity webhooks carry. Each envelope is
acknowledged only after its events are journaled, so a crash before the ack makes Slack redeliver.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from gateway.errors import StoreUnavailable, WebhookRejected
from gateway.events import InboundEvent

if TYPE_CHECKING:
    from channels.slack.channel import SlackChannel


async def run_socket_mode(channel: SlackChannel) -> None:
    """Receive events until cancelled; slack_sdk reconnects on its own when the link drops."""
    settings = channel.settings
    web = AsyncWebClient(base_url=settings.api_base, session=channel.services.http, retry_handlers=[])
    client = SocketModeClient(app_token=settings.app_token, web_client=web, logger=channel.log)

    async def on_request(client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        try:
            events = await _events(channel, request)
            if events:
                await channel.services.accept(events)
        except StoreUnavailable as exc:
            channel.log.error("not acknowledging Socket Mode envelope %s: %s", request.envelope_id, exc)
            return  # Slack redelivers it
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    client.socket_mode_request_listeners.append(on_request)
    try:
        await client.connect()
        await asyncio.Event().wait()
    finally:
        await client.close()


async def _events(channel: SlackChannel, request: SocketModeRequest) -> list[InboundEvent]:
    try:
        if request.type == "events_api" and request.payload.get("type") == "event_callback":
            return await channel.callback_events(request.payload)
        if request.type == "interactive":
            return await channel.interaction_events(request.payload)
    except WebhookRejected as exc:
        # A malformed envelope will not get better by redelivery: acknowledge and drop it.
        channel.log.warning("dropping Socket Mode envelope %s: %s", request.envelope_id, exc.reason)
    return []
