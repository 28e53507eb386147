"""Outbound activities: answers with the AI-generated label, feedback, and streaming entities."""

from __future__ import annotations

from typing import Any, Literal

#: marks a message "AI generated" in Teams (shown next to the bot's name)
AI_LABEL: dict[str, Any] = {
    "type": "https://schema.org/Message",
    "@type": "Message",
    "@context": "https://schema.org",
    "@id": "",
    "additionalType": ["AIGeneratedContent"],
}
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
StreamType = Literal["informative", "streaming", "final"]


def answer(text: str, *, feedback: Literal["builtin", "card", "off"] = "off", message_id: str | None = None,
           stream: dict[str, Any] | None = None, ai: bool = True) -> dict[str, Any]:
    """A message showing ``text`` (Teams Markdown); ``message_id`` is the answer feedback rates.

    ``ai``: the text is the agent's, labelled "AI generated" (not a command's or a person's).
    """
    entities: list[dict[str, Any]] = [dict(AI_LABEL)] if ai else []
    if stream is not None:
        entities.append(stream)
    activity: dict[str, Any] = {"type": "message", "text": text, "textFormat": "markdown", "entities": entities}
    if message_id and feedback == "builtin":
        activity["channelData"] = {"feedbackLoopEnabled": True}
    elif message_id and feedback == "card":
        activity["attachments"] = [feedback_card(message_id)]
    return activity


def plain(text: str) -> dict[str, Any]:
    """A message that is not the agent's (a handoff notice, a staff reply): no AI label."""
    return {"type": "message", "text": text, "textFormat": "markdown"}


def stream_info(kind: StreamType, stream_id: str | None, sequence: int | None) -> dict[str, Any]:
    info: dict[str, Any] = {"type": "streaminfo", "streamType": kind}
    if stream_id:
        info["streamId"] = stream_id
    if sequence is not None:
        info["streamSequence"] = sequence
    return info


def stream_chunk(text: str, kind: StreamType, stream_id: str | None, sequence: int) -> dict[str, Any]:
    """A typing activity of Teams' streaming protocol (informative update or response chunk)."""
    return {"type": "typing", "text": text, "entities": [stream_info(kind, stream_id, sequence)]}


def feedback_card(message_id: str) -> dict[str, Any]:
    """👍 / 👎 / retry as Adaptive Card ``Action.Execute`` buttons (they arrive as invokes)."""

    def button(title: str, verb: str, **data: str) -> dict[str, Any]:
        return {"type": "Action.Execute", "title": title, "verb": verb, "data": {"m": message_id, **data}}

    return {
        "contentType": CARD_TYPE,
        "content": {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4",
            "body": [],
            "actions": [button("👍", "feedback", f="positive"), button("👎", "feedback", f="negative"),
                        button("Try again", "retry")],
        },
    }


def invoke_answer(text: str) -> dict[str, Any]:
    """The synchronous answer to an ``adaptiveCard/action`` invoke (a toast in Teams)."""
    return {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text}
