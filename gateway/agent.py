"""What the core needs from an agent backend, independent of how it is reached.

The Chatbase v2 client in ``adapters.chatbase`` implements :class:`AgentClient`; tests and the
emulator-backed demo use the same client. Streams are reduced to a few typed events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Feedback = Literal["positive", "negative"] | None


@dataclass(frozen=True, slots=True)
class MessageStart:
    """The assistant message began (``start`` / ``message-start``)."""

    message_id: str | None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of answer text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The agent asks the client to run a custom action."""

    tool_call_id: str
    tool_name: str
    input: Any


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of one agent round, with the metadata the gateway keeps."""

    reason: str
    conversation_id: str | None = None
    message_id: str | None = None
    user_message_id: str | None = None
    user_id: str | None = None
    credits: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


AgentEvent = MessageStart | TextDelta | ToolCall | Finish


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One message of a conversation as the API lists it, reduced to what recovery needs."""

    id: str
    role: str
    text: str
    #: client actions the message asked for, answered or not
    calls: list[ToolCall] = field(default_factory=list)
    #: ids of those calls whose results the conversation already holds
    answered: frozenset[str] = frozenset()
    #: how the message ended when the API says so ("stop", "tool-calls", "error", ...)
    finish_reason: str | None = None
    #: Unix seconds
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """Conversation metadata as listed by the API."""

    id: str
    user_id: str | None
    created_at: str | None
    updated_at: str | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a cursor-paginated listing; ``cursor`` is None on the last page."""

    items: list[dict[str, Any]]
    cursor: str | None
    has_more: bool
    total: int | None


class AgentClient(Protocol):
    """The agent API as the core uses it. Every call may raise :class:`gateway.errors.AgentError`."""

    def chat(
        self,
        message: str | None,
        *,
        conversation_id: str | None = None,
        user_id: str | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Stream one round of the answer; ``message=None`` continues after tool results."""
        ...

    def retry(self, conversation_id: str, message_id: str) -> AsyncIterator[AgentEvent]:
        """Regenerate the assistant message ``message_id``, streamed."""
        ...

    async def submit_tool_result(self, conversation_id: str, tool_call_id: str, output: Any) -> None:
        """Answer a pending client action."""
        ...

    async def set_feedback(self, conversation_id: str, message_id: str, feedback: Feedback) -> None:
        """Set or clear thumbs up/down on an assistant message."""
        ...

    async def list_messages(
        self, conversation_id: str, *, cursor: str | None = None, limit: int = 20
    ) -> Page:
        """One page of a conversation's messages."""
        ...

    async def list_user_conversations(
        self, user_id: str, *, cursor: str | None = None, limit: int = 20
    ) -> Page:
        """One page of a user's conversations, by last activity."""
        ...

    async def history(self, conversation_id: str, *, limit: int = 100) -> list[HistoryMessage]:
        """The conversation's most recent messages, oldest first."""
        ...

    async def health(self) -> bool:
        """True when the API answers its health endpoint."""
        ...
