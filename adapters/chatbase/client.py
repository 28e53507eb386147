"""The Chatbase API v2 client: :class:`gateway.agent.AgentClient` over one shared aiohttp session.

Endpoints live here; HTTP, retries and error mapping live in :mod:`adapters.chatbase.transport`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from adapters.chatbase import documents
from adapters.chatbase.transport import Transport, parse
from gateway.agent import AgentClient, AgentEvent, Conversation, Feedback, HistoryMessage, Page
from gateway.budget import Budget
from gateway.config import AgentSettings

#: Body field of the feedback endpoint. The published example does not show it; keep it here only.
FEEDBACK_FIELD = "feedback"


@dataclass(frozen=True, slots=True)
class ConversationDetail:
    """A conversation with its most recent messages; ``messages.cursor`` pages to older ones."""

    conversation: Conversation
    messages: Page


class ChatbaseClient:
    """Chatbase API v2 client implementing :class:`gateway.agent.AgentClient`.

    The session is borrowed, not owned: the caller creates and closes it. Every method may raise
    :class:`gateway.errors.AgentError` subclasses; 429, 5xx and network failures are retried
    first (see :mod:`adapters.chatbase.transport`). ``backoff_base``/``backoff_cap`` shape the
    5xx backoff; a 429 asking for more than ``max_retry_after`` seconds is raised at once.
    ``budget`` (the API key's shared rate budget) paces every call but health.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: AgentSettings,
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        max_retry_after: float = 60.0,
        budget: Budget | None = None,
    ) -> None:
        self._settings = settings
        self._agent = f"/agents/{_seg(settings.agent_id)}"
        self._http = Transport(
            session,
            settings,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_retry_after=max_retry_after,
            budget=budget,
        )

    def __repr__(self) -> str:
        # Deliberately without the API key.
        return f"ChatbaseClient(api_base={self._settings.api_base!r}, agent_id={self._settings.agent_id!r})"

    # -- chat -----------------------------------------------------------------------------------

    def chat(
        self,
        message: str | None,
        *,
        conversation_id: str | None = None,
        user_id: str | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Stream one round of the answer; ``message=None`` continues after tool results.

        ``user_id`` only tags a new conversation (the API ignores it for existing ones). The
        round ends with a :class:`~gateway.agent.Finish` carrying the conversation id.
        """
        body = _chat_body(message, conversation_id, user_id, stream=True)
        return self._http.stream(f"{self._agent}/chat", body, "chat")

    async def chat_once(
        self,
        message: str | None,
        *,
        conversation_id: str | None = None,
        user_id: str | None = None,
    ) -> list[AgentEvent]:
        """One round without streaming; returns the same events a stream would have produced."""
        body = _chat_body(message, conversation_id, user_id, stream=False)
        doc = await self._http.call("POST", f"{self._agent}/chat", "chat", json_body=body)
        return parse(documents.chat_events, doc, "chat")

    def retry(self, conversation_id: str, message_id: str) -> AsyncIterator[AgentEvent]:
        """Regenerate the assistant message ``message_id``, streamed."""
        path = f"{self._conversation(conversation_id)}/retry"
        return self._http.stream(path, {"messageId": message_id, "stream": True}, "retry")

    async def submit_tool_result(self, conversation_id: str, tool_call_id: str, output: Any) -> None:
        """Answer a pending client action (then call :meth:`chat` with ``message=None``)."""
        body = {"toolCallId": tool_call_id, "output": output}
        await self._http.call(
            "POST", f"{self._conversation(conversation_id)}/tool-result", "tool-result", json_body=body
        )

    async def set_feedback(self, conversation_id: str, message_id: str, feedback: Feedback) -> None:
        """Set (``"positive"``/``"negative"``) or clear (``None``) feedback on an assistant message."""
        path = f"{self._conversation(conversation_id)}/messages/{_seg(message_id)}/feedback"
        await self._http.call("PATCH", path, "feedback", json_body={FEEDBACK_FIELD: feedback})

    # -- conversations --------------------------------------------------------------------------

    async def get_conversation(self, conversation_id: str) -> ConversationDetail:
        """Conversation metadata plus its most recent messages."""
        what = "get-conversation"
        doc = await self._http.call("GET", self._conversation(conversation_id), what)
        conv = parse(lambda d: documents.conversation(documents.unwrap(d)), doc, what)
        return ConversationDetail(conv, parse(documents.page, doc, what))

    async def list_conversations(
        self,
        *,
        cursor: str | None = None,
        limit: int = 20,
        start_date: str | dt.datetime | None = None,
        end_date: str | dt.datetime | None = None,
    ) -> Page:
        """One page of the agent's API conversations, by creation time."""
        params = _page_params(cursor, limit)
        for key, value in (("startDate", start_date), ("endDate", end_date)):
            if value is not None:
                params[key] = value.isoformat() if isinstance(value, dt.datetime) else value
        what = "list-conversations"
        doc = await self._http.call("GET", f"{self._agent}/conversations", what, params=params)
        return parse(documents.page, doc, what)

    async def list_user_conversations(self, user_id: str, *, cursor: str | None = None, limit: int = 20) -> Page:
        """One page of a user's conversations, by last activity."""
        path = f"{self._agent}/users/{_seg(user_id)}/conversations"
        what = "list-user-conversations"
        doc = await self._http.call("GET", path, what, params=_page_params(cursor, limit))
        return parse(documents.page, doc, what)

    async def list_messages(self, conversation_id: str, *, cursor: str | None = None, limit: int = 20) -> Page:
        """One page of messages: the newest page first, chronological within a page."""
        path = f"{self._conversation(conversation_id)}/messages"
        doc = await self._http.call("GET", path, "list-messages", params=_page_params(cursor, limit))
        return parse(documents.page, doc, "list-messages")

    async def history(self, conversation_id: str, *, limit: int = 100) -> list[HistoryMessage]:
        """The newest ``limit`` messages (at most 100, one page), oldest first, parsed for recovery."""
        page = await self.list_messages(conversation_id, limit=min(limit, 100))
        return parse(lambda items: [documents.history_message(m) for m in items], page.items, "list-messages")

    async def health(self) -> bool:
        """True when the API answers its health endpoint; never raises, never retries."""
        return await self._http.health()

    def _conversation(self, conversation_id: str) -> str:
        return f"{self._agent}/conversations/{_seg(conversation_id)}"


def _chat_body(
    message: str | None, conversation_id: str | None, user_id: str | None, *, stream: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {"stream": stream}
    if message is not None:
        body["message"] = message
    if conversation_id:
        body["conversationId"] = conversation_id
    elif user_id:
        body["userId"] = user_id
    return body


def _page_params(cursor: str | None, limit: int) -> dict[str, str]:
    params = {"limit": str(limit)}
    if cursor:
        params["cursor"] = cursor
    return params


def _seg(value: str) -> str:
    """One URL path segment: ids are opaque, so quote everything."""
    return quote(value, safe="")


if TYPE_CHECKING:

    def _conforms(client: ChatbaseClient) -> AgentClient:
        """mypy proves here that the client satisfies the core's protocol."""
        return client
