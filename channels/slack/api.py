"""Slack Web API calls through slack_sdk's AsyncWebClient, with errors mapped to the core's tree.

Slack rate limits are per method: a 429 on ``chat.update`` parks further ``chat.update`` calls
until its ``Retry-After`` has passed, while ``chat.postMessage`` carries on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited

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
    ) -> None:
        # No SDK retry handlers: retries are decided here and in the core, where they are visible.
        self._token_source = None if isinstance(token, str) else token
        self.client = AsyncWebClient(
            token=token if isinstance(token, str) else None, base_url=api_base, session=session,
            timeout=timeout, retry_handlers=[],
        )
        self.max_wait = max_wait
        self.attempts = attempts
        self._not_before: dict[str, float] = {}

    def blocked_for(self, method: str) -> float:
        """Seconds until ``method`` may be called again (0 when it is not rate limited)."""
        return max(0.0, self._not_before.get(method, 0.0) - time.monotonic())

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method`` once, after any wait Slack asked for on that method."""
        return await self._send(method, {k: v for k, v in params.items() if v is not None}, read=False)

    async def read(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a read method (``files.info``...), which takes query parameters rather than JSON."""
        return await self._send(method, {k: v for k, v in params.items() if v is not None}, read=True)

    async def _send(self, method: str, body: dict[str, Any], *, read: bool) -> dict[str, Any]:
        wait = self.blocked_for(method)
        if wait > 0:
            await asyncio.sleep(wait)
        if self._token_source is not None:
            body["token"] = await self._token_source()  # slack_sdk moves it into the Authorization header
        try:
            if read:
                response = await self.client.api_call(method, http_verb="GET", params=body)
            else:
                response = await self.client.api_call(method, json=body)
        except SlackApiError as exc:
            raise self._map_error(method, exc) from exc
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
            self._not_before[method] = time.monotonic() + retry_after
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
