"""Slack inbound payloads to :class:`InboundEvent`s: which messages to answer, and their text.

Pure functions: the channel adds what needs the store (threads the bot already answers).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from channels.slack.files import Linker, file_lines
from gateway.events import Identity, InboundEvent
from gateway.media import message_text

#: message subtypes that are still a person writing (``me_message`` is ``/me waves``); every other
#: subtype (edits, deletions, joins, bot messages...) is ignored so the bot never answers itself
#: or another bot.
_PERSON_SUBTYPES = frozenset({"thread_broadcast", "file_share", "me_message"})
#: Slackbot writes as this user id, without a bot_id (reminders, slash-command echoes, help)
SLACKBOT = "USLACKBOT"
#: ``message`` events in these conversation types can be thread follow-ups.
_SHARED = frozenset({"channel", "group", "mpim"})

ACTION_FEEDBACK_POSITIVE = "switchboard_feedback_positive"
ACTION_FEEDBACK_NEGATIVE = "switchboard_feedback_negative"
ACTION_RETRY = "switchboard_retry"

#: ``assistant``: a message in a thread of Slack's AI app container (the channel decides, from the store)
Trigger = Literal["mention", "dm", "thread_reply", "assistant"]


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who we are in the workspace (from ``auth.test``)."""

    user_id: str
    bot_id: str
    team_id: str


def classify(event: dict[str, Any], me: BotIdentity) -> Trigger | None:
    """Why this event might deserve an answer, or None when it must be ignored."""
    if event.get("bot_id") or event.get("bot_profile"):
        return None
    user = event.get("user")
    if not isinstance(user, str) or not user or user in (me.user_id, SLACKBOT):
        return None
    if event.get("hidden"):
        return None  # Slack's own bookkeeping messages, never shown as a person writing
    subtype = event.get("subtype")
    if subtype is not None and (not isinstance(subtype, str) or subtype not in _PERSON_SUBTYPES):
        return None
    channel_type = event.get("channel_type")
    if not isinstance(channel_type, str):
        channel_type = None  # a signed but malformed event: never a set lookup on a dict
    channel = str(event.get("channel", ""))
    kind = event.get("type")
    if kind == "app_mention":
        # A mention in a DM also arrives as message.im; answering both would reply twice.
        if channel_type == "im" or channel.startswith("D"):
            return None
        return "mention"
    if kind != "message":
        return None
    if channel_type == "im":
        return "dm"
    thread_ts = event.get("thread_ts")
    if channel_type in _SHARED and thread_ts and thread_ts != event.get("ts"):
        # A reply that mentions us also arrives as app_mention; that one answers it.
        if f"<@{me.user_id}" in str(event.get("text", "")):
            return None
        return "thread_reply"
    return None


def thread_of(event: dict[str, Any]) -> str:
    """The ts of the thread this message belongs to (a top-level message starts its own)."""
    return str(event.get("thread_ts") or event.get("ts") or "")


def scope_of(event: dict[str, Any], trigger: Trigger) -> str:
    """The conversation scope: the whole DM, or one thread of a channel."""
    channel = str(event.get("channel", ""))
    return channel if trigger == "dm" else f"{channel}:{thread_of(event)}"


def message_event(
    name: str, envelope: dict[str, Any], event: dict[str, Any], trigger: Trigger, me: BotIdentity,
    link: Linker | None = None,
) -> InboundEvent | None:
    """The InboundEvent for a message worth answering (None when nothing is left to say).

    ``link`` turns a file id into the link the agent gets; without it files are left out.
    """
    text = clean_text(str(event.get("text") or ""), me.user_id)
    text = message_text(text, file_lines(event, link) if link else [])
    if not text:
        return None
    team = str(envelope.get("team_id") or event.get("team") or me.team_id)
    # In channels we always answer inside the thread; a DM is answered where it was written.
    thread_ts = event.get("thread_ts") if trigger == "dm" else thread_of(event)
    return InboundEvent(
        channel=name,
        key=str(envelope.get("event_id") or f"{event.get('channel')}:{event.get('ts')}"),
        identity=Identity("slack", team, str(event["user"])),
        scope=scope_of(event, trigger),
        text=text,
        reply={"channel": str(event.get("channel", "")), "thread_ts": thread_ts, "ts": event.get("ts")},
        meta={"trigger": trigger},
    )


_BOT_MENTION = r"<@{uid}(?:\|[^>]*)?>"
_TOKEN = re.compile(r"<([^<>]*)>")


def clean_text(text: str, bot_user_id: str) -> str:
    """Slack's message markup to readable text: our own mention removed, others named."""
    text = re.sub(_BOT_MENTION.format(uid=re.escape(bot_user_id)), " ", text) if bot_user_id else text
    text = _TOKEN.sub(_readable, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _readable(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):  # user
        return "@" + (label or target[1:])
    if target.startswith("#"):  # channel
        return "#" + (label or target[1:])
    if target.startswith("!subteam^"):
        return label or "@group"
    if target.startswith("!date^"):
        return label
    if target.startswith("!"):  # !here, !channel, !everyone
        return "@" + target[1:]
    if target.startswith("mailto:"):
        return label or target[len("mailto:") :]
    if label and label != target:
        return f"{label} ({target})"
    return target


# -- interactivity ---------------------------------------------------------------------------------
def button_value(message_id: str, conversation_id: str | None, scope: str) -> str:
    """What feedback and retry buttons carry: enough to act without any lookup."""
    return json.dumps({"m": message_id, "c": conversation_id, "s": scope}, separators=(",", ":"))


def action_events(name: str, payload: dict[str, Any], me: BotIdentity) -> list[InboundEvent]:
    """Feedback and retry events from a ``block_actions`` payload (other payloads: none)."""
    if payload.get("type") != "block_actions":
        return []
    user, team_info, container, message, where = (
        _object(payload.get(k)) for k in ("user", "team", "container", "message", "channel")
    )
    team = team_info.get("id") or user.get("team_id") or me.team_id
    channel = str(container.get("channel_id") or where.get("id") or "")
    ts = str(container.get("message_ts") or message.get("ts") or "")
    thread_ts = container.get("thread_ts") or message.get("thread_ts")
    events: list[InboundEvent] = []
    actions = payload.get("actions")
    for action in actions if isinstance(actions, list) else []:
        if not isinstance(action, dict):
            continue
        action_id = action.get("action_id")
        if action_id not in (ACTION_FEEDBACK_POSITIVE, ACTION_FEEDBACK_NEGATIVE, ACTION_RETRY):
            continue
        try:
            value = json.loads(action.get("value") or "")
            message_id, scope = str(value["m"]), str(value["s"])
        except (ValueError, KeyError, TypeError):
            continue  # not one of our buttons, or tampered with: nothing to do
        meta: dict[str, Any] = {"message_id": message_id, "conversation_id": value.get("c")}
        if action_id == ACTION_RETRY:
            kind: Literal["feedback", "retry"] = "retry"
        else:
            kind = "feedback"
            meta["feedback"] = "positive" if action_id == ACTION_FEEDBACK_POSITIVE else "negative"
        events.append(
            InboundEvent(
                channel=name,
                key=f"action:{channel}:{ts}:{action_id}:{action.get('action_ts', '')}:{user.get('id', '')}",
                identity=Identity("slack", str(team), str(user.get("id", ""))),
                scope=scope,
                kind=kind,
                reply={
                    "channel": channel,
                    "thread_ts": thread_ts,
                    "ts": ts,
                    "text": message.get("text", ""),
                    "blocks": message["blocks"] if isinstance(message.get("blocks"), list) else [],
                },
                meta=meta,
            )
        )
    return events


def _object(value: Any) -> dict[str, Any]:
    """A payload field that should be an object; anything else counts as empty."""
    return value if isinstance(value, dict) else {}
