"""The recent messages of a web visitor's current conversation, read back from the agent.

The gateway keeps no transcripts: the agent's list-messages endpoint is the record, so a verified
visitor sees the same thread on every device, and nothing depends on the browser's storage.
Only text reaches the page (tool calls and results stay inside the gateway, as in the stream).
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.agent import Page
from gateway.channel import Services
from gateway.errors import AgentError

log = logging.getLogger(__name__)


def message_text(item: dict[str, Any]) -> str:
    """The text parts of a listed UI message, joined as the stream joins them."""
    parts = item.get("parts")
    if not isinstance(parts, list):
        return ""
    texts = [p["text"] for p in parts
             if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
    return "\n\n".join(t for t in texts if t)


def page_json(page: Page) -> dict[str, Any]:
    """The page as the chat page reads it: chronological messages with text, and the next cursor."""
    messages = []
    for item in page.items:
        role, text = item.get("role"), message_text(item)
        if role not in ("user", "assistant") or not text:
            continue  # a tool-only step, or a role the page has no bubble for
        message: dict[str, Any] = {"id": item.get("id"), "role": role, "text": text}
        if role == "assistant":
            message["feedback"] = item.get("feedback") if item.get("feedback") in ("positive", "negative") else None
        if item.get("createdAt") is not None:
            message["createdAt"] = item["createdAt"]
        messages.append(message)
    return {"messages": messages, "cursor": page.cursor if page.has_more else None, "hasMore": page.has_more}


async def read_history(services: Services, conversation_key: str, cursor: str | None, limit: int
                       ) -> dict[str, Any] | None:
    """One page (newest first) of the scope's current conversation; None when the agent failed."""
    try:
        page = await services.conversation_messages(conversation_key, cursor=cursor, limit=limit)
    except AgentError as exc:
        log.warning("web chat history unavailable for %s: %s", conversation_key, exc)
        return None
    return page_json(page)
