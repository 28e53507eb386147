"""Effectively-once at the agent: what a turn resumed after a crash does instead of asking again.

Before a turn first asks the agent it saves an ``asked`` marker in its journal progress (the
text, the conversation, the time, and the id of the last answer it knew in that conversation).
A turn that resumes with that marker but without a finished answer reads the conversation back
(list-messages) and decides:

* the user's message is not there: the agent never recorded it, so **resend** it;
* it is there with a complete answer after it: **deliver** that answer, no agent call;
* the answer after it broke off (``finishReason`` other than stop/tool-calls, or nothing in it):
  **regenerate** it through the retry endpoint, which does not repeat the user's message;
* the answer stopped at client actions: **continue** the tool round, submitting only the results
  the conversation does not hold yet, then ask the agent to go on.

The user's message is matched by the ``userMessageId`` the agent reported when the turn got that
far; otherwise by text and position: the first user message with exactly the turn's text that
comes after the last answer the gateway knew in that conversation, and was created no earlier
than the ask minus :data:`CLOCK_SKEW`. For a turn that was starting a new conversation and never
learned its id, the user's newest conversations (at most :data:`CONVERSATIONS_PROBED`, created
since the ask) are searched for one whose first user message is the turn's text.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.agent import AgentClient, HistoryMessage, ToolCall
from gateway.errors import AgentNotFound

log = logging.getLogger(__name__)

#: seconds by which the API's clock may be behind ours when matching by time
CLOCK_SKEW = 120.0
#: conversations of the user read when the turn never learned which one it started
CONVERSATIONS_PROBED = 3
#: messages read back from a conversation (one page)
HISTORY_LIMIT = 100
_COMPLETE = ("stop", "tool-calls")


@dataclass(slots=True)
class Recovery:
    """What a resumed turn does; ``text`` is the answer so far, rounds joined as a turn joins them."""

    action: Literal["resend", "deliver", "regenerate", "continue"]
    conversation_id: str | None = None
    text: str = ""
    #: deliver: the answer's message id; regenerate: the broken message; continue: the tool round's
    message_id: str | None = None
    #: continue: the round's client actions (answered ones included; the turn skips those)
    calls: list[ToolCall] = field(default_factory=list)
    answered: frozenset[str] = frozenset()


def asked_marker(text: str, conversation_id: str | None, user_id: str, after: str | None,
                 at: float | None = None) -> dict[str, Any]:
    """The progress entry saved just before the agent is first asked (``at``: now)."""
    return {"text": text, "conversation_id": conversation_id, "user_id": user_id, "after": after,
            "at": time.time() if at is None else at}


async def recover(agent: AgentClient, marker: dict[str, Any], known_conversation: str | None) -> Recovery:
    """Decide how a resumed turn goes on; ``known_conversation`` is the scope's conversation now."""
    conversation_id = marker.get("conversation_id") or known_conversation
    try:
        if conversation_id:
            history = await agent.history(str(conversation_id), limit=HISTORY_LIMIT)
        else:
            found = await _find_new_conversation(agent, marker)
            if found is None:
                return Recovery("resend")
            conversation_id, history = found
    except AgentNotFound:
        return Recovery("resend")  # the conversation is gone: nothing of ours was recorded there
    index = _user_message(history, marker)
    if index is None:
        return Recovery("resend", conversation_id)
    return _after(history[index + 1 :], str(conversation_id))


def _user_message(history: list[HistoryMessage], marker: dict[str, Any]) -> int | None:
    wanted = marker.get("user_message_id")
    if wanted:
        return next((i for i, m in enumerate(history) if m.id == wanted), None)
    start = 0
    after = marker.get("after")
    if after:
        known = next((i for i, m in enumerate(history) if m.id == after), None)
        start = 0 if known is None else known + 1
    since = float(marker.get("at", 0)) - CLOCK_SKEW
    for i in range(start, len(history)):
        message = history[i]
        if message.role == "user" and message.text == marker.get("text") and (
            message.created_at is None or message.created_at >= since
        ):
            return i
    return None


def _after(answer: list[HistoryMessage], conversation_id: str) -> Recovery:
    """The assistant messages that follow the user's message decide."""
    text = ""
    last: HistoryMessage | None = None
    for message in answer:
        if message.role != "assistant":
            break  # the next user turn: ours ends here
        if not complete(message):
            return Recovery("regenerate", conversation_id, message_id=message.id)
        if message.text:
            text = join_rounds(text, message.text)
        last = message
    if last is None:
        # Recorded without any answer: the retry endpoint needs an assistant message, so ask again.
        log.warning("the agent recorded the question but no answer; asking again")
        return Recovery("resend", conversation_id)
    if last.calls:
        return Recovery("continue", conversation_id, text, last.id, last.calls, last.answered)
    return Recovery("deliver", conversation_id, text, last.id)


def complete(message: HistoryMessage) -> bool:
    """An assistant message that ended normally and says something (text or a client action)."""
    if message.finish_reason is not None and message.finish_reason not in _COMPLETE:
        return False
    return bool(message.text or message.calls)


def join_rounds(text: str, more: str) -> str:
    """Text of one more agent round, separated as the turn separates rounds while streaming."""
    if text and not text.endswith(("\n", " ")):
        return text + "\n\n" + more
    return text + more


async def _find_new_conversation(
    agent: AgentClient, marker: dict[str, Any]
) -> tuple[str, list[HistoryMessage]] | None:
    user_id = marker.get("user_id")
    if not user_id:
        return None
    page = await agent.list_user_conversations(str(user_id), limit=CONVERSATIONS_PROBED)
    for item in page.items:
        conversation_id = item.get("id")
        if not isinstance(conversation_id, str):
            continue
        history = await agent.history(conversation_id, limit=HISTORY_LIMIT)
        first = next((m for m in history if m.role == "user"), None)
        if first is not None and _user_message([first], {**marker, "after": None, "user_message_id": None}) == 0:
            return conversation_id, history
    return None
