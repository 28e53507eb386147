"""Socket Mode: events arrive over an outbound WebSocket and are acked only once journaled."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from adapters.stores.memory import MemoryStore
from channels.slack import SlackChannel
from gateway.channel import InboundRequest
from gateway.config import parse_settings
from gateway.errors import StoreUnavailable, WebhookRejected
from gateway.events import InboundEvent
from gateway.metrics import Metrics
from tests.fakes.slack import APP_TOKEN, FakeMessage, FakeSlack
from tests.fakes.slack_inbound import action_body, event_body, mention, signed_headers


class RecordingServices:
    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.settings = parse_settings({}, env={})
        self.store = MemoryStore()
        self.http = http
        self.metrics = Metrics()
        self.accepted: list[InboundEvent] = []
        self.store_down = False
        self.refused = asyncio.Event()

    async def accept(self, events: Sequence[InboundEvent]) -> list[bool]:
        if self.store_down:
            self.refused.set()
            raise StoreUnavailable("redis is down")
        self.accepted.extend(events)
        return [True] * len(events)


@pytest.fixture
async def socket_mode() -> AsyncIterator[tuple[FakeSlack, SlackChannel, RecordingServices]]:
    async with FakeSlack() as slack, aiohttp.ClientSession() as http:
        services = RecordingServices(http)
        raw = {"type": "slack", "bot_token": slack.token, "mode": "socket", "app_token": APP_TOKEN,
               "api_base": slack.api_base}
        chan = SlackChannel.from_config("slack", raw, services)  # type: ignore[arg-type]
        assert isinstance(chan, SlackChannel)
        async with chan:
            task = asyncio.create_task(chan.run())
            try:
                yield slack, chan, services
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def test_events_arrive_and_are_acknowledged(socket_mode: Any) -> None:
    slack, _, services = socket_mode
    envelope = json.loads(event_body(mention("hello over the socket"), event_id="EvS1"))
    envelope_id = await slack.push("events_api", envelope)
    await slack.wait_for(lambda: envelope_id in slack.acks)
    [event] = services.accepted
    assert event.key == "EvS1" and event.text == "hello over the socket"


async def test_button_clicks_arrive_as_interactive_envelopes(socket_mode: Any) -> None:
    slack, _, services = socket_mode
    value = json.dumps({"m": "msg_1", "c": "conv_1", "s": "C0001:1.1"})
    msg = FakeMessage("C0001", "1.2", "answer", "1.1", [{"type": "actions", "elements": [
        {"type": "button", "action_id": "switchboard_feedback_positive", "value": value}]}])
    form = urllib.parse.parse_qs(action_body(msg, "switchboard_feedback_positive").decode())
    envelope_id = await slack.push("interactive", json.loads(form["payload"][0]))
    await slack.wait_for(lambda: envelope_id in slack.acks)
    [event] = services.accepted
    assert event.kind == "feedback" and event.meta["feedback"] == "positive"


async def test_nothing_is_acknowledged_while_the_store_is_down(socket_mode: Any) -> None:
    slack, _, services = socket_mode
    services.store_down = True
    lost = await slack.push("events_api", json.loads(event_body(mention("first"), event_id="EvS2")))
    await asyncio.wait_for(services.refused.wait(), 5)
    services.store_down = False
    kept = await slack.push("events_api", json.loads(event_body(mention("second"), event_id="EvS3")))
    await slack.wait_for(lambda: kept in slack.acks)
    assert lost not in slack.acks  # Slack will redeliver it
    assert [e.key for e in services.accepted] == ["EvS3"]


async def test_webhooks_are_refused_in_socket_mode(socket_mode: Any) -> None:
    _, chan, _ = socket_mode
    body = event_body(mention("hi"))
    request = InboundRequest("POST", "/webhooks/slack", {}, CIMultiDictProxy(CIMultiDict(signed_headers(body))),
                             body, "http://gw/webhooks/slack")
    with pytest.raises(WebhookRejected) as info:
        await chan.verify(request)
    assert info.value.status == 403
    assert chan.webhook_urls("https://bot.example.com") == []
