"""The emulator's in-memory world: conversations, messages, pending tool calls, cursors."""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from adapters.emulator.brain import PlannedCall, Reply
from adapters.emulator.envelope import ApiError, invalid

_T = TypeVar("_T")
CREDITS_PER_ANSWER = 1


@dataclass(slots=True)
class ToolCallRecord:
    """A tool call the agent made; answered once, expired when the user moves on."""

    id: str
    call: PlannedCall
    answered: bool = False
    expired: bool = False
    output: Any = None


@dataclass(slots=True)
class StoredMessage:
    """One message of a conversation."""

    id: str
    role: Literal["user", "assistant"]
    text: str
    seq: int
    created_at: int
    calls: list[ToolCallRecord] = field(default_factory=list)
    feedback: str | None = None
    finish_reason: str | None = None
    user_message_id: str | None = None
    #: the continuation after this message's tool results has been produced
    continued: bool = False

    def parts(self) -> list[dict[str, Any]]:
        """UI-message parts: text, then each tool call and (once answered) its result."""
        parts: list[dict[str, Any]] = [{"type": "text", "text": self.text}] if self.text else []
        for record in self.calls:
            parts.append(
                {"type": "tool-call", "toolCallId": record.id, "toolName": record.call.name, "input": record.call.input}
            )
            if record.answered:
                parts.append(
                    {
                        "type": "tool-result",
                        "toolCallId": record.id,
                        "toolName": record.call.name,
                        "output": record.output,
                    }
                )
        return parts

    def to_json(self) -> dict[str, Any]:
        """The message as the conversation endpoints list it."""
        return {
            "id": self.id,
            "role": self.role,
            "parts": self.parts(),
            "createdAt": self.created_at,
            "feedback": self.feedback,
            # An assistant message says how it ended, as the stream's finish did ("error": it broke off).
            "metadata": {"finishReason": self.finish_reason} if self.role == "assistant" else {},
        }


@dataclass(slots=True)
class StoredConversation:
    """A conversation created through the API."""

    id: str
    agent_id: str
    user_id: str | None
    title: str | None
    created_at: int
    updated_at: int
    created_seq: int
    activity_seq: int
    status: str = "ongoing"
    messages: list[StoredMessage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Conversation metadata as the list endpoints show it."""
        return {
            "id": self.id,
            "title": self.title,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "userId": self.user_id,
            "status": self.status,
        }

    def user_messages(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")

    def find(self, message_id: str) -> int | None:
        """Index of a message, or None."""
        return next((i for i, m in enumerate(self.messages) if m.id == message_id), None)


class State:
    """Everything the emulator remembers; one instance per :class:`~adapters.emulator.Emulator`."""

    def __init__(self) -> None:
        self.conversations: dict[str, StoredConversation] = {}
        # One global counter orders everything, so equal timestamps never make pages unstable.
        self._seq = itertools.count(1)

    def tick(self) -> int:
        return next(self._seq)

    def create(self, agent_id: str, user_id: str | None, title: str | None) -> StoredConversation:
        """A new conversation; ``user_id`` is fixed for its whole life."""
        now = int(time.time())
        seq = self.tick()
        conv = StoredConversation(
            id=str(uuid.uuid4()),
            agent_id=agent_id,
            user_id=user_id,
            title=title[:60] if title else None,
            created_at=now,
            updated_at=now,
            created_seq=seq,
            activity_seq=seq,
        )
        self.conversations[conv.id] = conv
        return conv

    def get(self, agent_id: str, conversation_id: str, *, mismatch: bool = False) -> StoredConversation:
        """The agent's conversation; 404, or 409 ``CHAT_CONVERSATION_MISMATCH`` when asked to tell."""
        conv = self.conversations.get(conversation_id)
        if conv is not None and conv.agent_id != agent_id and mismatch:
            raise ApiError(409, "CHAT_CONVERSATION_MISMATCH", "Conversation belongs to another agent")
        if conv is None or conv.agent_id != agent_id:
            raise ApiError(404, "RESOURCE_NOT_FOUND", "Conversation not found")
        return conv

    def touch(self, conv: StoredConversation) -> None:
        conv.updated_at = int(time.time())
        conv.activity_seq = self.tick()

    def add_user(self, conv: StoredConversation, text: str) -> StoredMessage:
        """Append a user message; calls still waiting for results expire (the user moved on)."""
        for message in conv.messages:
            for record in message.calls:
                if not record.answered:
                    record.expired = True
        msg = StoredMessage(_id("msg"), "user", text, self.tick(), int(time.time()))
        conv.messages.append(msg)
        self.touch(conv)
        return msg

    def add_assistant(self, conv: StoredConversation, reply: Reply, user_message_id: str | None) -> StoredMessage:
        """Append the agent's answer, giving each tool call its id."""
        msg = StoredMessage(
            _id("msg"),
            "assistant",
            reply.text,
            self.tick(),
            int(time.time()),
            calls=[ToolCallRecord(_id("call"), call) for call in reply.calls],
            finish_reason=reply.finish_reason,
            user_message_id=user_message_id,
        )
        conv.messages.append(msg)
        self.touch(conv)
        return msg

    def truncate(self, conv: StoredConversation, keep: int) -> None:
        """Drop every message from index ``keep`` on (their tool calls go with them)."""
        del conv.messages[keep:]
        self.touch(conv)

    def open_call(self, conv: StoredConversation, tool_call_id: str) -> ToolCallRecord:
        """A call that is waiting for its result, or 404 ``RESOURCE_TOOL_CALL_NOT_FOUND``."""
        for message in conv.messages:
            for record in message.calls:
                if record.id == tool_call_id and not record.answered and not record.expired:
                    return record
        raise ApiError(404, "RESOURCE_TOOL_CALL_NOT_FOUND", "Tool call not found or already answered")

    def continuable(self, conv: StoredConversation) -> StoredMessage:
        """The last assistant message whose tool calls are all answered and not yet continued."""
        last = next((m for m in reversed(conv.messages) if m.role == "assistant"), None)
        if last is None or not last.calls or last.continued:
            raise invalid({"message": "Required unless continuing after tool results"})
        if not all(r.answered for r in last.calls):
            raise invalid({"message": "Submit every tool result before continuing"})
        return last

    def leave_incomplete(self, msg: StoredMessage, sent: str) -> None:
        """An answer that broke off: only ``sent`` of it stays, its calls go, its reason is ``error``."""
        msg.text = sent
        msg.calls = []
        msg.finish_reason = "error"

    def reset(self) -> None:
        self.conversations.clear()


def metadata(conv: StoredConversation, msg: StoredMessage) -> dict[str, Any]:
    """Chatbase message metadata for an answer."""
    return {
        "conversationId": conv.id,
        "userId": conv.user_id,
        "messageId": msg.id,
        "userMessageId": msg.user_message_id,
        "usage": {"credits": CREDITS_PER_ANSWER},
    }


def encode_cursor(scope: str, seq: int) -> str:
    """An opaque cursor: the position after which the next page starts, bound to its listing."""
    raw = json.dumps({"s": scope, "p": seq}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(scope: str, cursor: str) -> int:
    """The position inside a cursor made by :func:`encode_cursor` for ``scope``; 400 otherwise."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if doc["s"] == scope and isinstance(doc["p"], int):
            return int(doc["p"])
    except (ValueError, KeyError, TypeError):
        pass
    raise invalid({"cursor": "Invalid cursor"})


def page(
    items: Sequence[_T], key: Callable[[_T], int], scope: str, cursor: str | None, limit: int
) -> tuple[list[_T], str | None, bool]:
    """Keyset pagination over ``items`` sorted by ``key`` descending: ``(page, cursor, has_more)``."""
    start = 0
    if cursor is not None:
        after = decode_cursor(scope, cursor)
        start = next((i for i, item in enumerate(items) if key(item) < after), len(items))
    chunk = list(items[start : start + limit])
    has_more = start + limit < len(items)
    return chunk, (encode_cursor(scope, key(chunk[-1])) if has_more and chunk else None), has_more


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"
