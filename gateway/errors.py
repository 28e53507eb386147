"""The exception tree every part of Switchboard speaks.

    SwitchboardError
    ├── ConfigError                  a user mistake in configuration (one readable line)
    ├── PluginError                  a configured plugin is missing or broken
    ├── WebhookRejected              inbound request refused (status carried: 400/401/403/413)
    ├── StoreUnavailable             the state store cannot be reached (webhooks answer 503)
    │   └── LeaseLost                a drain's conversation lease went to another worker
    ├── ChannelError                 a platform API call failed
    │   ├── ChannelRateLimited       429 with retry_after seconds
    │   └── ChannelPermanentError    4xx that retrying cannot fix (bad number, window closed)
    └── AgentError                   the Chatbase API v2 failed
        ├── AgentRateLimited         429; retry_after seconds (also a TimeoutError? no: it is a wait)
        ├── AgentUnavailable         5xx, connection reset, timeout (also an OSError)
        │   └── StreamBroken         the stream ended without `finish` / `[DONE]`, or errored mid-way
        ├── AgentAuthError           401/403 auth, plan or permission: the operator must act
        ├── CreditsExhausted         out of message credits: the operator must act
        ├── AgentNotFound            404: agent, conversation, message or tool call unknown
        ├── ConversationEnded        the conversation is not ongoing (ended or taken by a human)
        └── BadAgentRequest          400 validation errors: a bug on our side
Platform and agent errors always keep the original as ``__cause__`` (``raise … from exc``).
"""

from __future__ import annotations

from typing import Any


class SwitchboardError(Exception):
    """Root of every error Switchboard raises on purpose."""


class ConfigError(SwitchboardError):
    """A configuration mistake; ``str()`` is one line that names the key."""


class PluginError(SwitchboardError):
    """A configured plugin could not be found or loaded."""


class WebhookRejected(SwitchboardError):
    """An inbound request that must not be processed; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class StoreUnavailable(SwitchboardError, OSError):
    """The state store cannot be reached; callers answer 503 so platforms retry later."""


class LeaseLost(StoreUnavailable):
    """A turn's progress write found its conversation's lease held by another worker (a store
    outage outlasted it): that worker resumes the entry, so this turn must stop before its next
    visible action. Handled like an outage: the drain finds the lease gone and stops."""

    @classmethod
    def held_elsewhere(cls, lease: str, key: str) -> LeaseLost:
        """The error a store raises when the write of entry ``key`` meets ``lease`` held by another."""
        return cls(f"lease {lease} is held by another worker; not saving {key}")


class ChannelError(SwitchboardError):
    """A platform API call failed in a way that may be retried."""


class ChannelRateLimited(ChannelError):
    """The platform asked us to slow down; ``scope`` is the kind of limit it named, if it did."""

    def __init__(self, message: str, retry_after: float, *, scope: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.scope = scope


class ChannelPermanentError(ChannelError):
    """A platform refusal that retrying cannot fix."""


class AgentError(SwitchboardError):
    """A Chatbase API v2 call failed. ``code`` is the API's error code when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.request_id = request_id
        self.details = details


class AgentRateLimited(AgentError):
    """429 from the agent API; wait ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class AgentUnavailable(AgentError, OSError):
    """5xx, timeout or a network failure: worth retrying with backoff."""


class StreamBroken(AgentUnavailable):
    """A streamed answer stopped before its end; ``partial_text`` is what arrived."""

    def __init__(self, message: str, *, partial_text: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.partial_text = partial_text


class AgentAuthError(AgentError):
    """The API key, plan or permissions were refused."""


class CreditsExhausted(AgentError):
    """The account or agent has no message credits left."""


class AgentNotFound(AgentError):
    """The agent, conversation, message or tool call does not exist."""


class ConversationEnded(AgentError):
    """The conversation is no longer ongoing; start a new one."""


class BadAgentRequest(AgentError):
    """The API refused our request body: a bug on our side, never retried."""
