"""Slack installations and OAuth states kept in Switchboard's store (Redis, SQLite, memory).

slack_sdk's installation-store and state-store interfaces, implemented over the store's small
values, so a multi-workspace Slack app needs nothing but the store the gateway already has.

Keys (``<name>`` is the channel's name)::

    slack:<name>:install:<enterprise or ->:<team or ->          the workspace's latest installation
    slack:<name>:install:<enterprise or ->:<team or ->:<user>   the one that user made (user token)
    slack:<name>:oauth-state:<state>                             an issued state, until consumed

An org-wide install (Enterprise Grid) is kept under its enterprise with no team.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime
from typing import Any

from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from gateway.store import KeyValueStore

log = logging.getLogger(__name__)

#: how long an issued OAuth state stays valid (the person has this long to approve the app)
STATE_TTL = 600.0


def workspace_key(enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False) -> str:
    """``<enterprise or ->:<team or ->``; an org-wide install is found under its enterprise alone."""
    team = None if is_enterprise_install else team_id
    return f"{enterprise_id or '-'}:{team or '-'}"


class StoreInstallationStore(AsyncInstallationStore):
    """slack_sdk's :class:`AsyncInstallationStore` over a Switchboard :class:`KeyValueStore`."""

    def __init__(self, store: KeyValueStore, channel_name: str) -> None:
        self._store = store
        self._prefix = f"slack:{channel_name}:install:"

    @property
    def logger(self) -> logging.Logger:
        return log

    def _key(self, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False,
             user_id: str | None = None) -> str:
        base = self._prefix + workspace_key(enterprise_id, team_id, is_enterprise_install)
        return f"{base}:{user_id}" if user_id else base

    async def async_save(self, installation: Installation) -> None:
        raw = _dumps(installation.to_dict_for_copying())
        org = installation.is_enterprise_install
        await self._store.set_value(self._key(installation.enterprise_id, installation.team_id, org), raw)
        if installation.user_id:
            await self._store.set_value(
                self._key(installation.enterprise_id, installation.team_id, org, installation.user_id), raw
            )

    async def async_save_bot(self, bot: Bot) -> None:
        # Only called by apps that keep bots apart; ours keeps the bot inside the installation.
        found = await self.async_find_installation(
            enterprise_id=bot.enterprise_id, team_id=bot.team_id, is_enterprise_install=bot.is_enterprise_install
        )
        if found is not None:
            found.bot_token, found.bot_refresh_token = bot.bot_token, bot.bot_refresh_token
            found.bot_token_expires_at = bot.bot_token_expires_at
            await self.async_save(found)

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        raw = await self._store.get_value(self._key(enterprise_id, team_id, is_enterprise_install, user_id))
        if raw is None and enterprise_id and not is_enterprise_install:
            # A workspace of an org that installed the app org-wide.
            raw = await self._store.get_value(self._key(enterprise_id, None, True, user_id))
        if raw is None:
            return None
        try:
            return Installation(**json.loads(raw))
        except (ValueError, TypeError) as exc:
            log.error("unreadable Slack installation for %s/%s, ignored: %s", enterprise_id, team_id, exc)
            return None

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        found = await self.async_find_installation(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
        )
        return found.to_bot() if found is not None and found.bot_token else None

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._delete_workspace(enterprise_id, team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id:
            for org in (False, True):
                await self._store.delete_value(self._key(enterprise_id, team_id, org, user_id))
        else:
            await self._delete_workspace(enterprise_id, team_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._delete_workspace(enterprise_id, team_id)

    async def _delete_workspace(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Everything kept for a workspace (or, with no team, an org-wide install), user tokens too."""
        base = self._prefix + workspace_key(enterprise_id, team_id)
        await self._store.delete_value(base)
        await self._store.delete_values(base + ":")


class StoreOAuthStateStore(AsyncOAuthStateStore):
    """slack_sdk's :class:`AsyncOAuthStateStore`: each state is good once, for ``STATE_TTL`` seconds."""

    def __init__(self, store: KeyValueStore, channel_name: str, ttl: float = STATE_TTL) -> None:
        self._store = store
        self._prefix = f"slack:{channel_name}:oauth-state:"
        self._ttl = ttl

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        await self._store.set_value(self._prefix + state, "issued", self._ttl)
        return state

    async def async_consume(self, state: str) -> bool:
        if not state or len(state) > 200:
            return False
        key = self._prefix + state
        if await self._store.get_value(key) is None:
            return False
        # The counter makes the state good once even when two redirects race for it.
        first = await self._store.incr(key + ":used", self._ttl) == 1
        await self._store.delete_value(key)
        return first


def _dumps(data: dict[str, Any]) -> str:
    """An installation as JSON: its datetimes as Unix times, typed as Installation(**...) reads them
    back (whole seconds for expiries, a float for ``installed_at``)."""
    def plain(key: str, value: Any) -> Any:
        if not isinstance(value, datetime):
            return value
        return int(value.timestamp()) if key.endswith("_expires_at") else value.timestamp()

    return json.dumps({k: plain(k, v) for k, v in data.items()})
