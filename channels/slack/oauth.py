"""``GET /webhooks/<name>/install`` and ``/webhooks/<name>/oauth_redirect``: "Add to Slack".

slack-bolt's :class:`AsyncOAuthFlow` does the OAuth work: the install page with its ``state``
(issued into the store, and set as a cookie in the installer's browser), the state check on the
redirect, ``oauth.v2.access`` and saving the installation (``channels/slack/installations.py``).
Only these two routes go through slack-bolt; events keep the core's verify → journal → ack path.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from channels.slack.api import OAuthClient
from channels.slack.installations import StoreInstallationStore, StoreOAuthStateStore
from channels.slack.oauth_paths import install_path, redirect_path

if TYPE_CHECKING:
    from channels.slack.settings import SlackSettings
    from gateway.channel import Services


class SlackInstaller:
    """The OAuth install flow of one multi-workspace Slack channel."""

    def __init__(self, name: str, settings: SlackSettings, services: Services,
                 installations: StoreInstallationStore, log: logging.Logger) -> None:
        client = OAuthClient(base_url=settings.api_base, session=services.http, retry_handlers=[])
        redirect_uri = services.settings.public_url.rstrip("/") + redirect_path(name)
        self.flow = AsyncOAuthFlow(
            client=client,
            logger=log,
            settings=AsyncOAuthSettings(
                client_id=settings.client_id,
                client_secret=settings.client_secret,
                scopes=list(settings.scopes),
                user_scopes=[],
                redirect_uri=redirect_uri,
                install_path=install_path(name),
                redirect_uri_path=redirect_path(name),
                authorization_url=settings.authorize_url,
                installation_store=installations,
                installation_store_bot_only=True,
                token_rotation_expiration_minutes=settings.token_refresh_minutes,
                state_store=StoreOAuthStateStore(services.store, name),
                logger=log,
            ),
        )

    async def install(self, request: web.Request) -> web.StreamResponse:
        """The "Add to Slack" page: a fresh state in the store and in a cookie, then Slack's consent screen."""
        return _to_aiohttp(await self.flow.handle_installation(_to_bolt(request)))

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        """Slack sends the installer back here with a ``code``; a bad or reused ``state`` is refused."""
        return _to_aiohttp(await self.flow.handle_callback(_to_bolt(request)))


def _to_bolt(request: web.Request) -> AsyncBoltRequest:
    headers: dict[str, list[str]] = {}
    for key, value in request.headers.items():
        headers.setdefault(key.lower(), []).append(value)
    return AsyncBoltRequest(body="", query=request.query_string, headers=headers)  # type: ignore[arg-type]


def _to_aiohttp(response: BoltResponse) -> web.Response:
    out = web.Response(status=response.status, text=response.body)
    for key, values in response.headers.items():
        if key == "content-type":
            out.content_type = str(values[0]).split(";")[0]
            continue
        for value in values:
            out.headers.add(key, str(value))
    return out
