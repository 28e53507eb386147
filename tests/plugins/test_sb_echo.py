"""sb-echo's own tests, written as its author would: against ``switchboard.testing``, nothing of ours.

The ``echo_plugin`` fixture stands for ``pip install sb-echo``: it puts the distribution (and so its
entry points) on the path for the test.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateway.errors import WebhookRejected
from switchboard.testing import StubServices, inbound_request, running_gateway

TOKEN = "echo-secret"


async def test_a_signed_post_becomes_one_event_and_a_bad_token_is_refused(echo_plugin: Any) -> None:
    async with aiohttp.ClientSession() as http:
        channel = echo_plugin.EchoChannel.from_config("echo", {"type": "echo", "token": TOKEN}, StubServices(http))
        request = inbound_request({"id": "7", "user": "ann", "text": "hi"}, {"X-Echo-Token": TOKEN})
        await channel.verify(request)
        result = await channel.parse(request)
        (event,) = result.events
        assert (event.journal_key, event.identity.id, event.text, result.body) == ("echo:7", "ann", "hi", "queued")
        with pytest.raises(WebhookRejected) as refused:
            await channel.verify(inbound_request({"id": "8", "user": "ann", "text": "hi"}, {"X-Echo-Token": "no"}))
        assert refused.value.status == 401


async def test_the_gateway_answers_through_the_echo_channel_once(echo_plugin: Any) -> None:
    async with running_gateway({"echo": {"type": "echo", "token": TOKEN}}) as gw, aiohttp.ClientSession() as http:
        body = {"id": "1", "user": "ann", "text": "hello"}
        for _ in range(2):  # the platform retries: the second delivery is a duplicate
            async with http.post(f"{gw.url}/webhooks/echo", json=body, headers={"X-Echo-Token": TOKEN}) as r:
                assert r.status == 200
        await gw.idle()
    assert [(sent["key"], sent["user"]) for sent in echo_plugin.SENT] == [("1", "ann")]
    assert "hello" in echo_plugin.SENT[0]["text"]
