"""Chatbase API v2 adapter: the streaming client the gateway talks to its agent through."""

from adapters.chatbase.client import FEEDBACK_FIELD, ChatbaseClient, ConversationDetail
from adapters.chatbase.sse import SSEDecoder, parse_stream

__all__ = ["FEEDBACK_FIELD", "ChatbaseClient", "ConversationDetail", "SSEDecoder", "parse_stream"]
