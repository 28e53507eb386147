"""Slack Web API calls through slack_sdk's AsyncWebClient, with errors mapped to the core's tree.

Slack limits per API method per workspace (its tiers: "1+", "20+", "50+", "100+ per minute", each
tolerating bursts) and ``chat.postMessage`` at about one message per second per channel
(https://docs.slack.dev/apis/web-api/rate-limits). Every call is paced by the channel's
:class:`~gateway.pacing.Pacer` in three scopes: the Slack channel it writes to (the conversation's
own: a 429 pauses it), posts per channel (1/s, bursts of 3), and the method across the workspace
(no declared rate, since the tiers are minimums: a 429 there only reduces it). A 429 does not say
which limit it hit, so it pauses the refused channel and slows the method a little; it never parks
the method for every channel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited
from gateway.pacing import Pacer, Scope

#: methods that post a new message: about one per second per channel
_POSTS = frozenset({"chat.postMessage", "chat.startStream", "chat.postEphemeral"})

#: Slack error codes that mean "try again later" rather than "this request is wrong".
_TRANSIENT = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)


class SlackRefused(ChannelPermanentError):
    """Slack answered ``ok: false``; ``code`` is its error code (``channel_not_found``...)."""

    def __init__(self, method: str, code: str) -> None:
        super().__init__(f"Slack {method} failed: {code}")
        self.method = method
        self.code = code


#: where a workspace's current bot token comes from when it can change (rotation, reinstall)
TokenSource = Callable[[], Awaitable[str]]


class SlackApi:
    """A thin client: ``call(method, **params)`` returns the response body or raises.

    ``token`` is the bot token, or a :data:`TokenSource` asked before every call (a workspace
    installed through OAuth, whose token may be rotated while an answer streams).
    """

    def __init__(
        self,
        token: str | TokenSource,
        api_base: str,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: int = 30,
        max_wait: float = 60.0,
        attempts: int = 5,
        pacer: Pacer | None = None,
    ) -> None:
        # No SDK retry handlers: retries are decided here and in the core, where they are visible.
        self._token_source = None if isinstance(token, str) else token
        self.client = AsyncWebClient(
            token=token if isinstance(token, str) else None, base_url=api_base, session=session,
            timeout=timeout, retry_handlers=[],
        )
        self.max_wait = max_wait
        self.attempts = attempts
        self.pacer = pacer or Pacer("slack")

    @staticmethod
    def scopes(method: str, params: dict[str, Any]) -> list[Scope]:
        """The limits a call of ``method`` with ``params`` falls in, narrowest first."""
        scopes = [Scope("method", method)]
        channel = params.get("channel")
        if channel:
            if method in _POSTS:
                # Shared: several threads of one channel may be drained by different instances.
                scopes.insert(0, Scope("channel_posts", str(channel), rate=1.0, burst=3.0, shared=True))
            scopes.insert(0, Scope("channel", str(channel), conversation=True))
        return scopes

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method`` once, after any wait its scopes ask for."""
        return await self._send(method, {k: v for k, v in params.items() if v is not None}, read=False)

    async def read(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a read method (``files.info``...), which takes query parameters rather than JSON."""
        return await self._send(method, {k: v for k, v in params.items() if v is not None}, read=True)

    async def _send(self, method: str, body: dict[str, Any], *, read: bool) -> dict[str, Any]:
        scopes = self.scopes(method, body)
        await self.pacer.pace(scopes, str(body.get("channel") or method))
        if self._token_source is not None:
            body["token"] = await self._token_source()  # slack_sdk moves it into the Authorization header
        try:
            if read:
                response = await self.client.api_call(method, http_verb="GET", params=body)
            else:
                response = await self.client.api_call(method, json=body)
        except SlackApiError as exc:
            error = self._map_error(method, exc)
            if isinstance(error, ChannelRateLimited):
                self.pacer.refused(scopes, error.retry_after, named=error.scope, why=f"429 on {method}")
            raise error from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ChannelError(f"Slack {method}: {type(exc).__name__}: {exc}") from exc
        data = response.data
        return dict(data) if isinstance(data, dict) else {}

    async def call_patiently(self, method: str, **params: Any) -> dict[str, Any]:
        """Like :meth:`call`, but wait out 429s (up to ``attempts``) so no text is dropped."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await self.call(method, **params)
            except ChannelRateLimited as exc:
                if attempt == self.attempts or exc.retry_after > self.max_wait:
                    raise
        raise AssertionError("unreachable")

    def _map_error(self, method: str, exc: SlackApiError) -> ChannelError:
        response = exc.response
        # On an unparsable body slack_sdk hands over aiohttp's response, which says `status`.
        status = getattr(response, "status_code", None) or getattr(response, "status", None) or 0
        data = getattr(response, "data", None)
        code = str(data.get("error", "")) if isinstance(data, dict) else ""
        if status == 429 or code == "ratelimited":
            retry_after = _retry_after(getattr(response, "headers", {}) or {})
            return ChannelRateLimited(f"Slack {method} rate limited", retry_after)
        if status >= 500 or code in _TRANSIENT:
            return ChannelError(f"Slack {method} failed: HTTP {status} {code}".rstrip())
        return SlackRefused(method, code or f"http_{status}")


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", 1)))
    except (TypeError, ValueError):
        return 1.0


class OAuthClient(AsyncWebClient):
    """The client of ``oauth.v2.access`` (installs and token refreshes).

    The app's credentials go as form fields, which Slack accepts, instead of slack_sdk's HTTP
    basic auth: that path uses ``aiohttp.BasicAuth``, deprecated and gone in aiohttp 4.
    """

    async def oauth_v2_access(
        self,
        *,
        client_id: str,
        client_secret: str,
        code: str | None = None,
        redirect_uri: str | None = None,
        grant_type: str | None = None,
        refresh_token: str | None = None,
        **kwargs: Any,
    ) -> Any:
        form = {"client_id": client_id, "client_secret": client_secret, "code": code, "redirect_uri": redirect_uri,
                "grant_type": grant_type, "refresh_token": refresh_token, **kwargs}
        return await self.api_call("oauth.v2.access", data={k: v for k, v in form.items() if v is not None})
