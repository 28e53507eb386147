"""Meta webhook payloads (Messenger ``object: page``, Instagram ``object: instagram``) to events.

Every ``entry`` and every ``messaging`` item is read. Echoes of our own sends, deletions, edits,
delivery and read receipts, reactions, referrals, opt-ins, handover and policy notices produce
nothing (docs/setup/meta.md says why); so does ``standby`` (another app owns the thread). A
message's attachments become media lines with signed links (:mod:`channels.meta.media`). A quick
reply sends its payload (its text when the payload is a code); a postback sends its payload, or
its button title when the payload is a code such as ``GET_STARTED``. The 👍/👎 quick replies
under an answer become feedback events.
A sender known only as ``user_ref`` (the website Chat Plugin) is answered through ``user_ref``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote, unquote

from channels.meta.media import Linker, media_lines, sticker_text, story_reply_line
from gateway.events import EventKind, Identity, InboundEvent
from gateway.media import message_text

FEEDBACK_PREFIX = "SB_FEEDBACK:"
_SIGNS = {"+": "positive", "-": "negative"}
_CODE = re.compile(r"[A-Z0-9_:.-]+")  # GET_STARTED, MENU_HOURS: meant for machines, not the agent


def feedback_payload(sign: str, message_id: str, conversation_id: str | None = None) -> str:
    """The quick-reply payload of a 👍 (``+``) or 👎 (``-``) under the answer ``message_id``.

    The conversation id rides along so feedback on an older answer (after ``/new``) still reaches
    the right conversation; both ids are percent-encoded, so ``:`` only ever separates fields.
    """
    return f"{FEEDBACK_PREFIX}{sign}:{quote(message_id, safe='')}:{quote(conversation_id or '', safe='')}"


def parse_feedback(payload: str | None) -> dict[str, str] | None:
    """The feedback event's meta for a feedback payload, None for any other payload."""
    if not payload or not payload.startswith(FEEDBACK_PREFIX):
        return None
    sign, _, rest = payload[len(FEEDBACK_PREFIX) :].partition(":")
    message_id, _, conversation_id = rest.partition(":")
    if sign not in _SIGNS or not message_id:
        return None
    meta = {"feedback": _SIGNS[sign], "message_id": unquote(message_id)}
    if conversation_id:
        meta["conversation_id"] = unquote(conversation_id)
    return meta


def events_from_payload(body: Any, *, channel: str, channel_type: str, link: Linker) -> list[InboundEvent]:
    """The events of one webhook POST, oldest first (Meta may deliver out of order)."""
    found: list[tuple[int, InboundEvent]] = []
    entries = body.get("entry") if isinstance(body, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        items = entry.get("messaging")
        for item in items if isinstance(items, list) else []:
            event = _event(item, entry, channel, channel_type, link) if isinstance(item, dict) else None
            if event is not None:
                timestamp = item.get("timestamp")
                found.append((timestamp if isinstance(timestamp, int) else 0, event))
    found.sort(key=lambda pair: pair[0])  # stable: same-timestamp items keep their batch order
    return [event for _, event in found]


def _event(
    item: dict[str, Any], entry: dict[str, Any], channel: str, channel_type: str, link: Linker
) -> InboundEvent | None:
    sender, user_ref = _id(item.get("sender")), _user_ref(item.get("sender"))
    page = _id(item.get("recipient")) or str(entry.get("id") or "")
    if not (sender or user_ref) or not page:
        return None
    message, postback = item.get("message"), item.get("postback")
    if isinstance(message, dict):
        if message.get("is_echo") or message.get("is_deleted"):
            return None
        key = message.get("mid")
        quick_reply = message.get("quick_reply")
        payload = _str(quick_reply.get("payload")) if isinstance(quick_reply, dict) else None
        text_part = _str(message.get("text"))
        # Like a postback: a quick reply's payload is sent when it is a question, but a code such as
        # MENU_HOURS is for machines, so then the button's own text (which Meta repeats) is sent.
        spoken = payload if payload and not (_CODE.fullmatch(payload) and text_part) else text_part
        caption = spoken or sticker_text(message)
        items = media_lines(message, str(key), link) if isinstance(key, str) and key else []
        story = story_reply_line(message, str(key), link) if isinstance(key, str) and key else None
        if story:
            items.append(story)
        if message.get("is_unsupported") and not items:
            items = ["[The user sent a kind of message the platform does not pass on to apps]"]
        text: str | None = message_text(caption, items)
    elif isinstance(postback, dict):
        payload, title = _str(postback.get("payload")), _str(postback.get("title"))
        text = title if (payload is None or _CODE.fullmatch(payload)) and title else payload
        key = postback.get("mid") or _postback_key(sender or user_ref, item.get("timestamp"), payload, title)
    else:
        return None  # delivery, read, reaction, edit, referral, optin, handover, policy notices
    if not isinstance(key, str) or not key or not isinstance(text, str) or not text.strip():
        return None
    feedback = parse_feedback(payload)
    kind: EventKind = "message" if feedback is None else "feedback"
    # A Chat Plugin guest has no page-scoped id until they log in; their user_ref is answered as such.
    who = sender or f"user_ref:{user_ref}"
    return InboundEvent(
        channel=channel,
        key=key,
        identity=Identity(channel_type, page, who),
        scope=who,
        text=text.strip() if feedback is None else "",
        kind=kind,
        reply={"recipient": sender} if sender else {"user_ref": user_ref},
        meta=feedback or {},
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _id(party: Any) -> str:
    return str(party.get("id") or "") if isinstance(party, dict) else ""


def _user_ref(party: Any) -> str:
    return str(party.get("user_ref") or "") if isinstance(party, dict) else ""


def _postback_key(sender: str, timestamp: Any, payload: Any, title: Any) -> str:
    """Postbacks from older API versions have no mid: sender, time and payload identify one."""
    digest = hashlib.sha256(f"{payload}\x00{title}".encode()).hexdigest()[:16]
    return f"postback:{sender}:{timestamp}:{digest}"
