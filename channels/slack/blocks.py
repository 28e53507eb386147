"""Block Kit for finished answers: the text in sections, then 👍 / 👎 / retry buttons."""

from __future__ import annotations

from typing import Any

from channels.slack.inbound import (
    ACTION_FEEDBACK_NEGATIVE,
    ACTION_FEEDBACK_POSITIVE,
    ACTION_RETRY,
    button_value,
)
from gateway.text import split_text

#: a section block's text may hold at most 3,000 characters
SECTION_LIMIT = 3000
ACTIONS_BLOCK_ID = "switchboard_actions"
NOTE_BLOCK_ID = "switchboard_feedback_note"


def answer_blocks(mrkdwn: str, message_id: str, conversation_id: str | None, scope: str) -> list[dict[str, Any]]:
    """The last message of an answer: its text plus the feedback and retry buttons."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
        for chunk in split_text(mrkdwn, SECTION_LIMIT)
    ]
    return [*blocks, actions_block(message_id, conversation_id, scope)]


def actions_block(message_id: str, conversation_id: str | None, scope: str) -> dict[str, Any]:
    """The 👍 / 👎 / retry buttons; each carries the ids the agent needs."""
    value = button_value(message_id, conversation_id, scope)
    return {
        "type": "actions",
        "block_id": ACTIONS_BLOCK_ID,
        "elements": [
            _button(ACTION_FEEDBACK_POSITIVE, "👍", value),
            _button(ACTION_FEEDBACK_NEGATIVE, "👎", value),
            _button(ACTION_RETRY, "↻ Retry", value),
        ],
    }


def _button(action_id: str, label: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": value,
    }


def with_feedback_note(blocks: list[dict[str, Any]], feedback: str, user: str) -> list[dict[str, Any]]:
    """The message's blocks with a line saying who rated it and how (replacing an older one)."""
    emoji = "👍" if feedback == "positive" else "👎"
    note = {
        "type": "context",
        "block_id": NOTE_BLOCK_ID,
        "elements": [{"type": "mrkdwn", "text": f"{emoji} Feedback from <@{user}> recorded. Thank you!"}],
    }
    kept = [b for b in blocks if b.get("block_id") != NOTE_BLOCK_ID]
    return [*kept, note]
