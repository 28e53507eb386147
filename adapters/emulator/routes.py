"""Handlers of the documented Chatbase API v2 endpoints (auth, faults and rate limits happen in
:mod:`adapters.emulator.app`'s middleware before any of these run)."""

from __future__ import annotations

import datetime as dt
import time

from aiohttp import web

from adapters.emulator import brain, streaming
from adapters.emulator.envelope import USER_ID, ApiError, Fields, data, invalid, json_object, page_query, paginated
from adapters.emulator.faults import Faults
from adapters.emulator.state import State, StoredConversation, StoredMessage, metadata, page

_FEEDBACK = ("positive", "negative", None)


class Api:
    """The endpoints, bound to one emulator's state and fault settings."""

    def __init__(self, state: State, faults: Faults) -> None:
        self.state = state
        self.faults = faults

    def add_routes(self, app: web.Application, prefix: str) -> None:
        """Register every endpoint under ``prefix`` (``/api/v2``)."""
        conv = prefix + "/agents/{agentId}/conversations/{conversationId}"
        app.router.add_get(prefix + "/health", self.health)
        app.router.add_post(prefix + "/agents/{agentId}/chat", self.chat)
        app.router.add_post(conv + "/retry", self.retry)
        app.router.add_post(conv + "/tool-result", self.tool_result)
        app.router.add_patch(conv + "/messages/{messageId}/feedback", self.feedback)
        app.router.add_get(prefix + "/agents/{agentId}/conversations", self.list_conversations)
        app.router.add_get(prefix + "/agents/{agentId}/users/{userId}/conversations", self.user_conversations)
        app.router.add_get(conv, self.get_conversation)
        app.router.add_get(conv + "/messages", self.list_messages)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "timestamp": int(time.time())})

    # -- answering ------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        agent_id = request.match_info["agentId"]
        fields = Fields(await json_object(request))
        message = fields.string("message")
        stream = fields.boolean("stream", True)
        conversation_id = fields.string("conversationId")
        user_id = fields.string("userId", pattern=USER_ID)
        if message is None and conversation_id is None and "message" not in fields.errors:
            fields.errors["message"] = "Required when starting a conversation"
        fields.check()
        if conversation_id is not None:
            conv = self._ongoing(agent_id, conversation_id)  # userId is ignored here, by design
        else:
            conv = self.state.create(agent_id, user_id, message)
        if message is None:
            previous = self.state.continuable(conv)
            previous.continued = True
            reply = brain.continue_after([(r.call, r.output) for r in previous.calls])
            answer = self.state.add_assistant(conv, reply, None)
        else:
            user = self.state.add_user(conv, message)
            answer = self.state.add_assistant(conv, brain.answer(message, conv.user_messages()), user.id)
        return await self._respond(request, conv, answer, stream)

    async def retry(self, request: web.Request) -> web.StreamResponse:
        fields = Fields(await json_object(request))
        message_id = fields.string("messageId", required=True)
        stream = fields.boolean("stream", True)
        fields.check()
        assert message_id is not None
        conv = self._ongoing(request.match_info["agentId"], request.match_info["conversationId"])
        index = conv.find(message_id)
        if index is None:
            raise ApiError(404, "CHAT_RETRY_MESSAGE_NOT_FOUND", "Message not found in this conversation")
        if conv.messages[index].role != "assistant":
            raise ApiError(400, "RESOURCE_MESSAGE_NOT_ASSISTANT", "Only assistant messages can be retried")
        user_index = next((i for i in range(index - 1, -1, -1) if conv.messages[i].role == "user"), None)
        if user_index is None:
            raise ApiError(400, "CHAT_RETRY_NO_USER_MESSAGE", "No user message precedes this message")
        user = conv.messages[user_index]
        # Regenerate from the user turn: later rounds of the same answer go too.
        self.state.truncate(conv, user_index + 1)
        reply = brain.answer(user.text, conv.user_messages())
        answer = self.state.add_assistant(conv, reply, user.id)
        return await self._respond(request, conv, answer, stream)

    async def tool_result(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        fields = Fields(body)
        tool_call_id = fields.string("toolCallId", required=True)
        if "output" not in body:
            fields.errors["output"] = "Required"
        fields.check()
        assert tool_call_id is not None
        conv = self._conversation(request)
        record = self.state.open_call(conv, tool_call_id)
        record.answered = True
        record.output = body["output"]
        self.state.touch(conv)
        return data({"success": True})

    async def feedback(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        value = body.get("feedback", "missing")
        if value not in _FEEDBACK:
            raise invalid({"feedback": 'Expected "positive", "negative" or null'})
        conv = self._conversation(request)
        index = conv.find(request.match_info["messageId"])
        if index is None:
            raise ApiError(404, "RESOURCE_MESSAGE_NOT_FOUND", "Message not found")
        msg = conv.messages[index]
        if msg.role != "assistant":
            raise ApiError(400, "RESOURCE_MESSAGE_NOT_ASSISTANT", "Feedback is only for assistant messages")
        msg.feedback = value
        return data(msg.to_json())

    # -- reading --------------------------------------------------------------------------------

    async def list_conversations(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agentId"]
        cursor, limit = page_query(request)
        start = _date(request, "startDate")
        end = _date(request, "endDate")
        convs = sorted(
            (
                c
                for c in self.state.conversations.values()
                if c.agent_id == agent_id
                and (start is None or c.created_at >= start)
                and (end is None or c.created_at <= end)
            ),
            key=lambda c: c.created_seq,
            reverse=True,
        )
        chunk, nxt, more = page(convs, lambda c: c.created_seq, f"c:{agent_id}", cursor, limit)
        return paginated([c.to_json() for c in chunk], nxt, more, len(convs))

    async def user_conversations(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agentId"]
        user_id = request.match_info["userId"]
        if not USER_ID.fullmatch(user_id):
            raise invalid({"userId": "At most 128 characters of letters, digits, '.', '_' or '-'"})
        cursor, limit = page_query(request)
        convs = sorted(
            (c for c in self.state.conversations.values() if c.agent_id == agent_id and c.user_id == user_id),
            key=lambda c: c.activity_seq,
            reverse=True,
        )
        chunk, nxt, more = page(convs, lambda c: c.activity_seq, f"u:{agent_id}:{user_id}", cursor, limit)
        return paginated([c.to_json() for c in chunk], nxt, more, len(convs))

    async def get_conversation(self, request: web.Request) -> web.Response:
        conv = self._conversation(request)
        messages, nxt, more = self._messages(conv, None, page_query(request)[1])
        body = {**conv.to_json(), "messages": messages}
        return web.json_response(
            {"data": body, "pagination": {"cursor": nxt, "hasMore": more, "total": len(conv.messages)}}
        )

    async def list_messages(self, request: web.Request) -> web.Response:
        conv = self._conversation(request)
        cursor, limit = page_query(request)
        messages, nxt, more = self._messages(conv, cursor, limit)
        return paginated(messages, nxt, more, len(conv.messages))

    # -- helpers --------------------------------------------------------------------------------

    def _messages(
        self, conv: StoredConversation, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, object]], str | None, bool]:
        """Newest page first, each page in chronological order."""
        newest_first = list(reversed(conv.messages))
        chunk, nxt, more = page(newest_first, lambda m: m.seq, f"m:{conv.id}", cursor, limit)
        return [m.to_json() for m in reversed(chunk)], nxt, more

    def _conversation(self, request: web.Request) -> StoredConversation:
        return self.state.get(request.match_info["agentId"], request.match_info["conversationId"])

    def _ongoing(self, agent_id: str, conversation_id: str) -> StoredConversation:
        conv = self.state.get(agent_id, conversation_id, mismatch=True)
        if conv.status != "ongoing":
            raise ApiError(400, "CHAT_CONVERSATION_NOT_ONGOING", f"Conversation is {conv.status}")
        return conv

    async def _respond(
        self, request: web.Request, conv: StoredConversation, answer: StoredMessage, stream: bool
    ) -> web.StreamResponse:
        meta = metadata(conv, answer)
        shape = self.faults.stream_shape
        if not stream:
            return data(streaming.document(answer, meta, legacy=shape == "legacy"))
        cut = self.faults.take_cut()
        plan = streaming.events(answer, meta, shape=shape)
        if cut is not None:
            plan = streaming.cut_plan(plan)
        if cut is not None or shape == "error":
            # The agent failed mid-answer: its history keeps only what was sent, marked so.
            self.state.leave_incomplete(answer, streaming.sent_text(plan))
        return await streaming.stream(
            request, answer, meta, plan=plan, token_delay=self.faults.token_delay, cut=cut, faults=self.faults
        )


def _date(request: web.Request, name: str) -> float | None:
    """A date filter: ISO 8601 (date or date-time) or Unix seconds/milliseconds."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        number = float(raw)
    except ValueError:
        pass
    else:
        return number / 1000 if number > 1e11 else number
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid({name: "Expected an ISO 8601 date or a Unix timestamp"}) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()
