"""What Slack sends a gateway, for tests: signed request headers and the payloads of events,
button clicks and assistant threads (the fake Web API that answers the gateway is
:mod:`tests.fakes.slack`)."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from slack_sdk.signature import SignatureVerifier

from tests.fakes.slack import BOT_USER, SECRET, TEAM, FakeMessage


def signed_headers(
    body: bytes, *, secret: str = SECRET, timestamp: int | None = None, content_type: str = "application/json"
) -> dict[str, str]:
    """Headers of a Slack request, signed by slack_sdk's own code (independent of ours)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature, "Content-Type": content_type}


def event_body(event: dict[str, Any], *, event_id: str = "Ev0001", team: str = TEAM,
               bot_user: str = BOT_USER) -> bytes:
    """An ``event_callback`` envelope around ``event``."""
    envelope = {
        "token": "legacy", "team_id": team, "api_app_id": "A0001", "event": event,
        "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": team, "user_id": bot_user, "is_bot": True,
                            "is_enterprise_install": False}],
    }
    return json.dumps(envelope).encode()


def mention(text: str, *, channel: str = "C0001", user: str = "U0001", ts: str = "1690000000.000100",
            thread_ts: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER}> {text}",
                             "ts": ts, "channel": channel, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message(text: str, *, channel: str = "D0001", channel_type: str = "im", user: str = "U0001",
            ts: str = "1690000000.000200", thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
                             "channel_type": channel_type, "event_ts": ts, **extra}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def action_body(message: FakeMessage, action_id: str, *, user: str = "U0001", team: str = TEAM,
                action_ts: str = "1700009999.000001") -> bytes:
    """The form body of a ``block_actions`` click on one of ``message``'s buttons."""
    value = next(
        e["value"] for b in message.blocks if b.get("type") == "actions"
        for e in b["elements"] if e["action_id"] == action_id
    )
    payload = {
        "type": "block_actions",
        "user": {"id": user, "team_id": team},
        "team": {"id": team},
        "api_app_id": "A0001",
        "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel,
                      "thread_ts": message.thread_ts, "is_ephemeral": False},
        "channel": {"id": message.channel},
        "message": {"ts": message.ts, "text": message.text, "blocks": message.blocks,
                    "thread_ts": message.thread_ts},
        "actions": [{"action_id": action_id, "block_id": "switchboard_actions", "value": value,
                     "type": "button", "action_ts": action_ts}],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def assistant_thread(kind: str = "assistant_thread_started", *, channel: str = "D0A55",
                     thread_ts: str = "1729999327.187299", user: str = "U0001", viewing: str | None = "C0VIEW",
                     team: str = TEAM) -> dict[str, Any]:
    """``assistant_thread_started`` (or ``_context_changed``): someone opened the AI app container."""
    context: dict[str, Any] = {}
    if viewing:
        context = {"channel_id": viewing, "team_id": team, "enterprise_id": None}
    return {"type": kind, "assistant_thread": {"user_id": user, "context": context, "channel_id": channel,
                                               "thread_ts": thread_ts}, "event_ts": "1715873754.429808"}
