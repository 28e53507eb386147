"""Agent Markdown to each channel's markup; the implementation lives in :mod:`gateway.markup`."""

from __future__ import annotations

from gateway.markup import (
    streaming_safe,
    to_chat_html,
    to_email_text,
    to_html,
    to_mrkdwn,
    to_plain,
    to_speech,
    to_whatsapp,
)

__all__ = [
    "streaming_safe",
    "to_chat_html",
    "to_email_text",
    "to_html",
    "to_mrkdwn",
    "to_plain",
    "to_speech",
    "to_whatsapp",
]
