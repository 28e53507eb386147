"""The WhatsApp Cloud API (Graph ``/{phone_number_id}/messages`` and media nodes), errors mapped once.

Requests carry ``Authorization: Bearer <access token>``. Errors come in Graph's shape
(``{"error": {"message", "type", "code", "error_data": {"details"}, "fbtrace_id"}}``), with
WhatsApp's own codes on top of Graph's:

* throughput and pair rate limits (130429, 131056, 80007) → ``ChannelRateLimited``;
* 131047, the 24-hour customer service window has closed → :class:`WhatsAppWindowClosed`
  (permanent: only an approved template can reach the person until they write again);
* temporary failures (131000, 131016, 133004) → ``ChannelError``, retried with backoff;
* Graph's own rate limits and temporary codes as for Messenger; 5xx and network errors are
  retried; anything else (bad token, bad parameter) is permanent.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from channels.meta.graph import RATE_LIMIT_CODES as GRAPH_RATE_LIMIT_CODES
from channels.meta.graph import TRANSIENT_CODES as GRAPH_TRANSIENT_CODES
from channels.meta.graph import request_json, retry_seconds
from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited

WINDOW_CLOSED = 131047
RATE_LIMIT_CODES = frozenset({130429, 131056, 80007}) | GRAPH_RATE_LIMIT_CODES
TRANSIENT_CODES = frozenset({131000, 131016, 133004}) | GRAPH_TRANSIENT_CODES
#: a reply button's title, its id, and the body of a message that carries buttons
BUTTON_TITLE_LIMIT = 20
BUTTON_ID_LIMIT = 256
INTERACTIVE_BODY_LIMIT = 1024


class WhatsAppWindowClosed(ChannelPermanentError):
    """The person last wrote more than 24 hours ago: free-form messages cannot reach them."""


class WhatsAppRejected(ChannelPermanentError):
    """WhatsApp accepted a message, then reported that it failed (a ``failed`` status)."""


def window_closed_note(to: str, detail: str) -> str:
    """The one log line for a closed window, the way the Twilio WhatsApp channel words it."""
    return (
        f"reply to {to} not delivered: outside WhatsApp's 24-hour window (Cloud API error {WINDOW_CLOSED}); "
        f"only approved templates can reach this user until they write again ({detail})"
    )


class CloudApi:
    """One business phone number's messages endpoint, and the media nodes its webhooks name."""

    def __init__(
        self, http: aiohttp.ClientSession, api_base: str, api_version: str, phone_number_id: str, access_token: str
    ) -> None:
        self._http = http
        self._root = f"{api_base}/{api_version}"
        self._messages = f"{self._root}/{phone_number_id}/messages"
        self._phone_number_id = phone_number_id
        self._headers = {"Authorization": f"Bearer {access_token}"}

    @property
    def auth_headers(self) -> dict[str, str]:
        """What a media download needs (the URL Graph gives is useless without the token)."""
        return dict(self._headers)

    async def send(self, to: str, message: dict[str, Any]) -> str | None:
        """Send one message (``{"type": "text", "text": {...}}`` and the like); its ``wamid``."""
        body = await self._call("POST", self._messages, {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **message,
        })
        sent = body.get("messages")
        first = sent[0] if isinstance(sent, list) and sent and isinstance(sent[0], dict) else {}
        return str(first["id"]) if first.get("id") else None

    async def mark_read(self, wamid: str, *, typing: bool) -> None:
        """Blue ticks on the person's message, and "typing…" for up to 25 s when ``typing``."""
        payload: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        if typing:
            payload["typing_indicator"] = {"type": "text"}
        await self._call("POST", self._messages, payload)

    async def media_url(self, media_id: str) -> str:
        """The short-lived download URL of an inbound media item (fetch it with :attr:`auth_headers`)."""
        body = await self._call("GET", f"{self._root}/{media_id}", None,
                                params={"phone_number_id": self._phone_number_id})
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ChannelPermanentError("WhatsApp gave no download URL for this media")
        return url

    async def _call(
        self, method: str, url: str, payload: dict[str, Any] | None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        status, body, retry_after = await request_json(
            self._http, method, url, api="WhatsApp Cloud API", json=payload, params=params, headers=self._headers
        )
        if status < 300:
            return body if isinstance(body, dict) else {}
        raise cloud_error(status, body, retry_after)


def cloud_error(status: int, body: Any, retry_after: str | None = None) -> ChannelError:
    """The Switchboard error for a failed Cloud API call."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    text = f"WhatsApp Cloud API {status} (code {code}): {error.get('message') or 'no message'}"
    if details:
        text += f" ({details})"
    if code == WINDOW_CLOSED:
        return WhatsAppWindowClosed(text)
    if status == 429 or code in RATE_LIMIT_CODES:
        return ChannelRateLimited(text, retry_seconds(retry_after))
    if status >= 500 or code in TRANSIENT_CODES:
        return ChannelError(text)
    return ChannelPermanentError(text)

