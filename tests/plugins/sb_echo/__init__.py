"""An out-of-tree Switchboard plugin, as a third party would write it: one channel, one tool.

The channel accepts JSON ``{"id", "user", "text"}`` posted with header ``X-Echo-Token`` and
"delivers" answers by recording them (in ``SENT``, and in the file named by ``ECHO_OUT``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from gateway.channel import Channel, ChannelSettings, InboundRequest, WebhookResult
from gateway.errors import WebhookRejected
from gateway.events import Identity, InboundEvent

SENT: list[dict[str, Any]] = []


class EchoSettings(ChannelSettings):
    token: str
    max_text_length: int = 4000


class EchoChannel(Channel):
    type = "echo"
    Settings = EchoSettings

    def describe(self) -> str:
        return "echo test channel"

    @property
    def conf(self) -> EchoSettings:
        assert isinstance(self.settings, EchoSettings)
        return self.settings

    def split(self, rendered: str) -> list[str]:
        from gateway.text import split_text

        return split_text(rendered, self.conf.max_text_length)

    async def verify(self, request: InboundRequest) -> None:
        if request.headers.get("X-Echo-Token") != self.conf.token:
            raise WebhookRejected(401, "bad token")

    async def parse(self, request: InboundRequest) -> WebhookResult:
        data = request.json()
        if not isinstance(data, dict) or not {"id", "user", "text"} <= data.keys():
            raise WebhookRejected(400, "need id, user and text")
        event = InboundEvent(
            channel=self.name,
            key=str(data["id"]),
            identity=Identity("echo", "", str(data["user"])),
            scope=str(data.get("scope", data["user"])),
            text=str(data["text"]),
            # what a channel may add: a notice to deliver as it is, context for the agent only
            kind="notice" if data.get("notice") else "message",
            meta={"preface": str(data["preface"])} if "preface" in data else {},
        )
        return WebhookResult(events=[event], body="queued")

    async def send_text(self, event: InboundEvent, text: str) -> None:
        delay = float(os.environ.get("ECHO_SEND_DELAY", "0"))
        if delay:
            import asyncio

            await asyncio.sleep(delay)  # a slow platform API, so tests can crash us mid-delivery
        record = {"channel": self.name, "key": event.key, "user": event.identity.id, "text": text}
        SENT.append(record)
        out = os.environ.get("ECHO_OUT")
        if out:
            # One short append per delivery: simpler than an executor, and O_APPEND keeps lines whole
            # when several gateway processes share the file.
            with open(out, "a", encoding="utf-8") as fh:  # noqa: ASYNC230
                fh.write(json.dumps(record) + "\n")


async def shout(arguments: Any, context: Any) -> dict[str, str]:
    """A tool plugin: upper-cases ``arguments["text"]`` and says which channel asked."""
    return {"shout": str(arguments.get("text", "")).upper(), "channel": context.channel}
