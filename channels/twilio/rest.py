"""The one Twilio REST call we make (create a Message), with errors mapped to the core's tree.

Plain aiohttp on the shared session rather than twilio's client: the SDK builds its hosts from
regions and edges, while Switchboard must honour one ``api_base`` so tests can use a fake.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import aiohttp

from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited

_TIMEOUT = aiohttp.ClientTimeout(total=20)
#: Twilio error code: free-form WhatsApp message outside the 24-hour customer-service window
WHATSAPP_WINDOW_CLOSED = 63016


class TwilioRejected(ChannelPermanentError):
    """A 4xx from Twilio that retrying cannot fix; ``code`` is Twilio's error code."""

    def __init__(self, message: str, *, status: int, code: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class WhatsAppWindowClosed(TwilioRejected):
    """Twilio error 63016: a free-form WhatsApp reply outside the 24-hour window.

    The core counts permanent failures by exception class, so this name is the metric's reason.
    """


class TwilioRest:
    """Messages API of one account."""

    def __init__(self, http: aiohttp.ClientSession, api_base: str, account_sid: str, auth_token: str) -> None:
        self._http = http
        self._url = f"{api_base.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        token = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}

    async def create_message(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``POST …/Messages.json``; returns the created Message resource."""
        try:
            async with self._http.post(self._url, data=dict(params), headers=self._headers, timeout=_TIMEOUT) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                try:
                    body: Any = await resp.json(content_type=None)
                except ValueError:
                    body = {}
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ChannelError(f"Twilio Messages API unreachable: {exc!r}") from exc
        if not isinstance(body, dict):
            body = {}
        if status < 300:
            return body
        code = body.get("code") if isinstance(body.get("code"), int) else None
        detail = f"Twilio {status}" + (f" error {code}" if code else "") + f": {body.get('message', '')}"
        if status == 429:
            raise ChannelRateLimited(detail, retry_after=_seconds(retry_after))
        if status >= 500:
            raise ChannelError(detail)
        if code == WHATSAPP_WINDOW_CLOSED:
            raise WhatsAppWindowClosed(detail, status=status, code=code)
        raise TwilioRejected(detail, status=status, code=code)


def _seconds(value: str | None) -> float:
    try:
        return max(float(value), 0.0) if value else 1.0
    except ValueError:
        return 1.0
