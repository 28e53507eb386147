"""What the support team reads in a handoff thread (Slack mrkdwn): the header and the transcript."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.config import HandoffSettings

#: longest single transcript message shown; the whole conversation is one link away
TRANSCRIPT_LINE = 600


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters, escaped so user text cannot mention or link anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header_text(
    settings: HandoffSettings,
    *,
    who: str,
    channel: str,
    reason: str,
    summary: str,
    user_id: str,
    conversation_id: str | None,
    agent_id: str,
) -> str:
    """The thread's first message: who, why, the ids, and how to answer and resolve."""
    lines = [
        f":raising_hand: *{mrkdwn_escape(who)}* needs a person.",
        f"*Why:* {mrkdwn_escape(reason)}",
    ]
    if summary:
        lines.append(f"*Summary:* {mrkdwn_escape(summary)}")
    ids = f"*userId:* `{user_id}`"
    if conversation_id:
        ids += f" · *conversation:* `{conversation_id}`"
        if settings.transcript_url:
            url = settings.transcript_url.format(
                conversation_id=conversation_id, agent_id=agent_id, user_id=user_id
            )
            ids += f" · <{url}|transcript>"
    lines.append(ids)
    resolve = " or ".join(f"`{w}`" for w in settings.resolve_words[:2]) or "the resolve word"
    lines.append(
        f"Reply in this thread: every message goes to them on {mrkdwn_escape(channel)}. "
        f"Send {resolve} to hand them back to the bot."
    )
    return "\n".join(lines)


def transcript_text(messages: Iterable[dict[str, Any]]) -> str:
    """Recent messages (chronological, as list-messages pages are) as ``*User:*``/``*Agent:*`` lines."""
    lines = []
    for message in messages:
        text = " ".join(
            str(part.get("text", ""))
            for part in message.get("parts") or []
            if isinstance(part, dict) and part.get("type") == "text"
        ).strip()
        if not text:
            continue
        if len(text) > TRANSCRIPT_LINE:
            text = text[:TRANSCRIPT_LINE] + "…"
        speaker = "User" if message.get("role") == "user" else "Agent"
        lines.append(f"*{speaker}:* {mrkdwn_escape(text)}")
    return "*Recent messages*\n" + "\n".join(lines) if lines else "_(No earlier messages.)_"
