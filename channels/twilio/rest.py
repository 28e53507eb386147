"""The Twilio REST calls we make (create a Message; list Messages to find one a crash interrupted),
with errors mapped to the core's tree.

Plain aiohttp on the shared session rather than twilio's client: the SDK builds its hosts from
regions and edges, while Switchboard must honour one ``api_base`` so tests can use a fake.
"""

from __future__ import annotations

import base64
import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import aiohttp

from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited
from gateway.pacing import Pacer, Scope

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


#: pages of the Messages list a lookup reads at most (each up to ``_PAGE_SIZE`` messages)
_LOOKUP_PAGES = 5
_PAGE_SIZE = 100


class TwilioRest:
    """Messages API of one account."""

    def __init__(self, http: aiohttp.ClientSession, api_base: str, account_sid: str, auth_token: str,
                 pacer: Pacer | None = None) -> None:
        self._http = http
        self._account = account_sid
        self._pacer = pacer or Pacer("twilio")
        self._base = api_base.rstrip("/") + "/"
        self._url = f"{api_base.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        token = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}

    async def create_message(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``POST …/Messages.json``; returns the created Message resource.

        Twilio limits REST concurrency per account (error 20429) and its 429 does not say more, so
        a 429 pauses the recipient's conversation and slows the account's rate a little.
        """
        scopes = [Scope("recipient", params.get("To", ""), conversation=True), Scope("account", self._account)]
        await self._pacer.pace(scopes, params.get("To", ""))
        try:
            return await self._request("POST", self._url, data=dict(params))
        except ChannelRateLimited as exc:
            self._pacer.refused(scopes, exc.retry_after, named=exc.scope, why="Twilio 429")
            raise

    async def find_message(self, *, to: str, from_: str, body: str, since: float) -> str | None:
        """The SID of a message from ``from_`` to ``to`` with exactly ``body``, created at or after
        ``since`` (Unix time; Twilio's dates have whole seconds), newest first; None if there is none.

        Reads the Messages list filtered by ``To``, ``From`` and ``DateSent>=`` the day of ``since``.
        """
        day = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d")
        query: dict[str, str] | None = {"To": to, "From": from_, "DateSent>": day, "PageSize": str(_PAGE_SIZE)}
        url = self._url
        for _ in range(_LOOKUP_PAGES):
            page = await self._request("GET", url, params=query)
            for message in page.get("messages") or []:
                if message.get("body") == body and _created(message) >= int(since):
                    return str(message.get("sid"))
            next_page = page.get("next_page_uri")
            if not next_page:
                return None
            url, query = urljoin(self._base, str(next_page).lstrip("/")), None
        return None

    async def _request(self, method: str, url: str, *, data: dict[str, str] | None = None,
                       params: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            async with self._http.request(method, url, data=data, params=params, headers=self._headers,
                                          timeout=_TIMEOUT) as resp:
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


def _created(message: dict[str, Any]) -> float:
    """A Message's ``date_created`` (RFC 2822, as Twilio writes it) as Unix time; 0 if missing."""
    try:
        return email.utils.parsedate_to_datetime(str(message.get("date_created"))).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _seconds(value: str | None) -> float:
    try:
        return max(float(value), 0.0) if value else 1.0
    except ValueError:
        return 1.0
