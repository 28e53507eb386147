"""The Messenger Send API (``POST {api_base}/me/messages``) and its errors, mapped once.

Graph errors come as ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``:

* rate limits (codes 4, 17, 32, 613, or HTTP 429) → ``ChannelRateLimited`` (the core waits);
* the 24-hour window is closed (code 10 subcode 2018278, or code 551 "person unavailable")
  → :class:`OutsideMessagingWindow`, a ``ChannelPermanentError``: logged, counted, not retried;
* 5xx, temporary codes 1 and 2, network failures → ``ChannelError`` (retried with backoff);
* anything else (bad token, bad parameter) → ``ChannelPermanentError``.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited
from gateway.pacing import Pacer, Scope

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
#: the rate-limit codes that say their scope: 32 is the page's limit (Meta throttles per page)
_NAMED_SCOPES = {32: "page"}
TRANSIENT_CODES = frozenset({1, 2})
WINDOW_SUBCODE = 2018278
UNAVAILABLE_CODE = 551
#: Graph rarely says how long to wait; throttling lifts within minutes, the core caps each wait
DEFAULT_RATE_WAIT = 20.0
_TIMEOUT = aiohttp.ClientTimeout(total=30)


class OutsideMessagingWindow(ChannelPermanentError):
    """The user's last message is older than 24 hours (or they cannot be reached)."""


class SendApi:
    """Posts Send API requests with the page access token."""

    def __init__(self, http: aiohttp.ClientSession, api_base: str, access_token: str,
                 pacer: Pacer | None = None) -> None:
        self._http = http
        self._pacer = pacer or Pacer("meta")
        self._url = f"{api_base}/me/messages"
        self._token = access_token

    async def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one request, paced per recipient and per page; return Graph's JSON answer or raise
        a mapped error. A 429 pauses the page when Graph says so (code 32), else the recipient."""
        recipient = payload.get("recipient")
        who = str(recipient.get("id", "")) if isinstance(recipient, dict) else ""
        scopes = [Scope("recipient", who, conversation=True), Scope("page", "me")]
        await self._pacer.pace(scopes, who)
        try:
            return await self._post(payload)
        except ChannelRateLimited as exc:
            self._pacer.refused(scopes, exc.retry_after, named=exc.scope, why="Graph rate limit")
            raise

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        status, body, retry_after = await request_json(
            self._http, "POST", self._url, api="Graph API", params={"access_token": self._token}, json=payload
        )
        if status < 300:
            return body if isinstance(body, dict) else {}
        raise graph_error(status, body, retry_after)


async def request_json(
    http: aiohttp.ClientSession, method: str, url: str, *, api: str, **kwargs: Any
) -> tuple[int, Any, str | None]:
    """One Graph-style call: its status, its JSON body (None when it is not JSON) and ``Retry-After``.

    A failure to reach ``api`` is a :class:`ChannelError` naming only the exception type, plus the
    host and port for a connection error: other aiohttp errors quote the URL, which carries the token.
    """
    try:
        async with http.request(method, url, timeout=_TIMEOUT, **kwargs) as resp:
            status, retry_after = resp.status, resp.headers.get("Retry-After")
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
    except (aiohttp.ClientError, TimeoutError) as exc:
        detail = f": {exc}" if isinstance(exc, aiohttp.ClientConnectorError) else ""
        raise ChannelError(f"{api} unreachable: {type(exc).__name__}{detail}") from None
    return status, body, retry_after


async def attachment_url(http: aiohttp.ClientSession, api_base: str, access_token: str, mid: str, index: int) -> str:
    """A fresh download URL of one attachment of the message ``mid`` (Graph's message node)."""
    status, body, _ = await request_json(
        http, "GET", f"{api_base}/{mid}/attachments", api="Graph API", params={"access_token": access_token}
    )
    if status >= 300:
        raise graph_error(status, body)
    data = body.get("data") if isinstance(body, dict) else None
    item = data[index] if isinstance(data, list) and 0 <= index < len(data) else None
    if not isinstance(item, dict):
        raise ChannelPermanentError(f"Graph lists no attachment {index} on this message")
    for url in (_nested(item, "image_data", "url"), _nested(item, "video_data", "url"), item.get("file_url")):
        if isinstance(url, str) and url:
            return url
    raise ChannelPermanentError("Graph gave no download URL for this attachment")


def _nested(item: dict[str, Any], outer: str, inner: str) -> Any:
    value = item.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


def graph_error(status: int, body: Any, retry_after: str | None = None) -> ChannelError:
    """The Switchboard error for a failed Graph call."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = error.get("code"), error.get("error_subcode")
    text = f"Graph API {status} (code {code}, subcode {subcode}): {error.get('message') or 'no message'}"
    if status == 429 or code in RATE_LIMIT_CODES:
        named = _NAMED_SCOPES.get(code) if isinstance(code, int) else None
        return ChannelRateLimited(text, retry_seconds(retry_after), scope=named)
    if subcode == WINDOW_SUBCODE or code == UNAVAILABLE_CODE:
        return OutsideMessagingWindow(f"outside Meta's 24-hour messaging window, not retried: {text}")
    if status >= 500 or code in TRANSIENT_CODES:
        return ChannelError(text)
    return ChannelPermanentError(text)


def retry_seconds(retry_after: str | None) -> float:
    """A Meta API's ``Retry-After`` in seconds (:data:`DEFAULT_RATE_WAIT` when absent or unreadable)."""
    try:
        return max(0.0, float(retry_after)) if retry_after else DEFAULT_RATE_WAIT
    except ValueError:
        return DEFAULT_RATE_WAIT
