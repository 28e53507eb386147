"""JSON documents of Chatbase API v2 → typed values, read defensively.

The published pages disagree on where a non-streamed answer keeps its metadata (top level or
under ``metadata``) and whether the payload is wrapped in ``{"data": ...}``; every form is accepted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from adapters.chatbase.sse import finish_from_metadata
from gateway.agent import AgentEvent, Conversation, HistoryMessage, MessageStart, Page, TextDelta, ToolCall

_ANSWERED_STATES = ("output-available", "output-error")
_META_KEYS = ("conversationId", "userId", "messageId", "userMessageId", "usage", "finishReason")


def unwrap(doc: Any) -> Any:
    """The payload of a ``{"data": ...}`` response (or the document itself when unwrapped)."""
    if isinstance(doc, dict) and "data" in doc and "error" not in doc:
        return doc["data"]
    return doc


def chat_events(doc: Any) -> list[AgentEvent]:
    """Events equivalent to a streamed answer, from a non-streaming chat/retry response."""
    message = unwrap(doc)
    if not isinstance(message, dict):
        raise ValueError("chat response is not a JSON object")
    meta: dict[str, Any] = {}
    nested = message.get("metadata")
    if isinstance(nested, dict):
        meta.update(nested)
    for key in _META_KEYS:
        if key in message and key not in meta:
            meta[key] = message[key]
    message_id = _str(message.get("id")) or _str(meta.get("messageId"))
    events: list[AgentEvent] = [MessageStart(message_id)]
    parts = message.get("parts")
    if not isinstance(parts, list):
        # Older/simpler shapes carry the answer as a plain string.
        text = message.get("text", message.get("content"))
        parts = [{"type": "text", "text": text}] if isinstance(text, str) else []
    for part in parts:
        event = _part_event(part)
        if event is not None:
            events.append(event)
    reason = _str(meta.pop("finishReason", None))
    if reason is None:
        reason = "tool-calls" if any(isinstance(e, ToolCall) for e in events) else "stop"
    meta.setdefault("messageId", message_id)
    events.append(finish_from_metadata(reason, meta, message_id))
    return events


def _part_event(part: Any) -> AgentEvent | None:
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        return TextDelta(text) if isinstance(text, str) and text else None
    call_id = _str(part.get("toolCallId"))
    if call_id is None or part.get("state") in ("output-available", "output-error"):
        return None  # not a call, or a call that was already answered
    # "tool-call" (documented), "dynamic-tool" and "tool-<name>" (AI SDK UI message parts).
    if kind == "tool-call" or kind == "dynamic-tool":
        name = _str(part.get("toolName"))
    elif isinstance(kind, str) and kind.startswith("tool-") and kind != "tool-result":
        name = _str(part.get("toolName")) or kind[len("tool-") :]
    else:
        return None
    if name is None:
        return None
    args = part["input"] if "input" in part else part.get("args", {})
    return ToolCall(call_id, name, args)


def history_message(raw: Any) -> HistoryMessage:
    """A listed message: its text, the client actions it asked for and which have results."""
    if not isinstance(raw, dict) or not _str(raw.get("id")):
        raise ValueError("message has no id")
    parts = raw.get("parts")
    if not isinstance(parts, list):
        text = raw.get("text", raw.get("content"))
        parts = [{"type": "text", "text": text}] if isinstance(text, str) else []
    texts: list[str] = []
    calls: list[ToolCall] = []
    answered: set[str] = set()
    for part in parts:
        if not isinstance(part, dict):
            continue
        call_id = _str(part.get("toolCallId"))
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif call_id and (part.get("type") == "tool-result" or part.get("state") in _ANSWERED_STATES):
            answered.add(call_id)
        if call_id and part.get("type") != "tool-result":
            call = _part_event({**part, "state": None})
            if isinstance(call, ToolCall):
                calls.append(call)
    meta = raw.get("metadata")
    reason = _str(meta.get("finishReason")) if isinstance(meta, dict) else None
    created = _timestamp(raw.get("createdAt"))
    return HistoryMessage(
        id=raw["id"],
        role=_str(raw.get("role")) or "",
        text="".join(texts),
        calls=calls,
        answered=frozenset(answered),
        finish_reason=reason or _str(raw.get("finishReason")),
        created_at=dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() if created else None,
    )


def page(doc: Any) -> Page:
    """A cursor-paginated listing: ``{"data": [...], "pagination": {cursor, hasMore, total}}``."""
    if not isinstance(doc, dict):
        raise ValueError("paginated response is not a JSON object")
    items = doc.get("data")
    if isinstance(items, dict) and isinstance(items.get("messages"), list):
        items = items["messages"]  # the get-conversation form
    if not isinstance(items, list):
        raise ValueError("paginated response has no data list")
    pag = doc.get("pagination")
    if not isinstance(pag, dict):
        pag = {}
    cursor = _str(pag.get("cursor"))
    has_more = pag.get("hasMore")
    total = pag.get("total")
    return Page(
        items=[item for item in items if isinstance(item, dict)],
        cursor=cursor,
        has_more=bool(has_more) if isinstance(has_more, bool) else cursor is not None,
        total=total if isinstance(total, int) and not isinstance(total, bool) else None,
    )


def conversation(raw: Any) -> Conversation:
    """Conversation metadata; timestamps become ISO 8601 strings whatever form they came in."""
    if not isinstance(raw, dict) or not _str(raw.get("id")):
        raise ValueError("conversation has no id")
    return Conversation(
        id=raw["id"],
        user_id=_str(raw.get("userId")),
        created_at=_timestamp(raw.get("createdAt")),
        updated_at=_timestamp(raw.get("updatedAt")),
        raw=raw,
    )


def _timestamp(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Unix seconds per the OpenAPI document; a value this large can only be milliseconds.
        seconds = value / 1000 if value > 1e11 else value
        return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
