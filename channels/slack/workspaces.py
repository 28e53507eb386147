"""Which workspace an event came from, and the bot that answers there.

One workspace (``bot_token``): one client, our identity from ``auth.test``. Many workspaces
(OAuth installs): each event names its team (and enterprise); that workspace's installation in
the store gives the bot's identity and token, refreshed before it expires when the app uses token
rotation (slack_sdk's :class:`AsyncTokenRotator`). A workspace that uninstalled the app has no
installation: its events are acknowledged and left unanswered.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackTokenRotationError
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator

from channels.slack.api import OAuthClient, SlackApi, SlackRefused
from channels.slack.inbound import BotIdentity
from channels.slack.installations import StoreInstallationStore, workspace_key
from gateway.errors import ChannelError
from gateway.pacing import Pacer

if TYPE_CHECKING:
    from channels.slack.settings import SlackSettings
    from gateway.channel import Services
    from gateway.events import InboundEvent

log = logging.getLogger(__name__)

#: seconds one instance may hold the right to rotate a workspace's token
ROTATION_LEASE = 30.0


@dataclass(frozen=True, slots=True)
class WorkspaceRef:
    """Where an event happened: the team, its enterprise (Grid), and whether the install is org-wide."""

    team_id: str
    enterprise_id: str | None = None
    org_install: bool = False

    @property
    def key(self) -> str:
        return workspace_key(self.enterprise_id, self.team_id, self.org_install)

    def to_json(self) -> dict[str, Any]:
        return {"team": self.team_id, "enterprise": self.enterprise_id, "org": self.org_install}

    @classmethod
    def of_envelope(cls, envelope: dict[str, Any]) -> WorkspaceRef:
        """From an ``event_callback`` envelope (its first authorization names the installation)."""
        auths = envelope.get("authorizations")
        auth = auths[0] if isinstance(auths, list) and auths and isinstance(auths[0], dict) else {}
        team = auth.get("team_id") or envelope.get("team_id") or ""
        enterprise = auth.get("enterprise_id") or envelope.get("enterprise_id") or None
        return cls(str(team), str(enterprise) if enterprise else None, bool(auth.get("is_enterprise_install")))

    @classmethod
    def of_action(cls, payload: dict[str, Any]) -> WorkspaceRef:
        """From an interactivity payload (a button click)."""
        team, user, enterprise = (_object(payload.get(k)) for k in ("team", "user", "enterprise"))
        return cls(str(team.get("id") or user.get("team_id") or ""), enterprise.get("id") or None,
                   bool(payload.get("is_enterprise_install")))

    @classmethod
    def of_event(cls, event: InboundEvent) -> WorkspaceRef:
        """From a journaled event (``reply["workspace"]``, else the identity's team)."""
        saved = event.reply.get("workspace")
        if isinstance(saved, dict):
            return cls(str(saved.get("team") or ""), saved.get("enterprise") or None, bool(saved.get("org")))
        return cls(event.identity.namespace)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Workspace:
    """A workspace we can answer in: who we are there, and the client that speaks for us."""

    me: BotIdentity
    api: SlackApi


class InstalledWorkspaces:
    """Workspaces that installed the app through OAuth, their tokens in the store."""

    def __init__(self, name: str, settings: SlackSettings, services: Services) -> None:
        self.name = name
        self.settings = settings
        self.services = services
        self.installations = StoreInstallationStore(services.store, name)
        client = OAuthClient(base_url=settings.api_base, session=services.http, retry_handlers=[])
        self._rotator = AsyncTokenRotator(
            client_id=settings.client_id, client_secret=settings.client_secret, client=client
        )
        self._cache: dict[str, Installation] = {}
        self._apis: dict[str, SlackApi] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._owner = secrets.token_hex(8)

    async def resolve(self, ref: WorkspaceRef) -> Workspace | None:
        """The workspace an inbound event came from; None when the app is not installed there."""
        found = await self.installations.async_find_installation(
            enterprise_id=ref.enterprise_id, team_id=ref.team_id, is_enterprise_install=ref.org_install
        )
        if found is None or not found.bot_token:
            self._forget_cached(ref)
            return None
        self._cache[ref.key] = found
        me = BotIdentity(user_id=found.bot_user_id or "", bot_id=found.bot_id or "",
                         team_id=found.team_id or ref.team_id)
        return Workspace(me, self.api(ref))

    def api(self, ref: WorkspaceRef) -> SlackApi:
        """The client for ``ref``: every call uses the workspace's current token."""
        api = self._apis.get(ref.key)
        if api is None:
            async def token() -> str:
                return await self.token(ref)

            # Slack's limits are per workspace, so each workspace is paced on its own.
            pacer = Pacer(self.name, self.services.metrics, lambda: self.services.store)
            api = self._apis[ref.key] = SlackApi(token, self.settings.api_base, self.services.http, pacer=pacer)
        return api

    async def token(self, ref: WorkspaceRef) -> str:
        """The workspace's bot token, refreshed first when it expires within the configured window."""
        cached = self._cache.get(ref.key)
        if cached is not None and cached.bot_token and not self._expiring(cached):
            return cached.bot_token
        async with self._locks.setdefault(ref.key, asyncio.Lock()):
            found = await self.installations.async_find_installation(
                enterprise_id=ref.enterprise_id, team_id=ref.team_id, is_enterprise_install=ref.org_install
            )
            if found is None or not found.bot_token:
                self._forget_cached(ref)
                raise SlackRefused("installation", "not_installed")
            if self._expiring(found):
                found = await self._rotate(ref, found)
            self._cache[ref.key] = found
            assert found.bot_token is not None
            return found.bot_token

    def _expiring(self, installation: Installation) -> bool:
        expires = installation.bot_token_expires_at
        return expires is not None and expires <= time.time() + self.settings.token_refresh_minutes * 60

    async def _rotate(self, ref: WorkspaceRef, installation: Installation) -> Installation:
        """Refresh the bot token, one instance at a time (a refresh token is spent by its use)."""
        store = self.services.store
        lease = f"slack:{self.name}:rotating:{ref.key}"
        for _ in range(50):
            if await store.try_lock(lease, self._owner, ROTATION_LEASE):
                break
            await asyncio.sleep(0.2)
        else:
            raise ChannelError(f"Slack token rotation for {ref.key} is held by another instance")
        try:
            # Another instance may have rotated it while we waited for the lease.
            current = await self.installations.async_find_installation(
                enterprise_id=ref.enterprise_id, team_id=ref.team_id, is_enterprise_install=ref.org_install
            ) or installation
            if not self._expiring(current):
                return current
            minutes = self.settings.token_refresh_minutes
            try:
                rotated = await self._rotator.perform_token_rotation(
                    installation=current, minutes_before_expiration=minutes
                )
            except SlackTokenRotationError as exc:
                raise ChannelError(f"Slack token rotation for {ref.key} failed: {exc}") from exc
            if rotated is None:
                return current
            await self.installations.async_save(rotated)
            log.info("rotated the Slack bot token of workspace %s", ref.key)
            return rotated
        finally:
            await store.unlock(lease, self._owner)

    async def uninstalled(self, ref: WorkspaceRef) -> None:
        """``app_uninstalled``, or the bot's tokens revoked: delete everything kept for the workspace."""
        await self.installations.async_delete_all(
            enterprise_id=ref.enterprise_id, team_id=None if ref.org_install else ref.team_id
        )
        self._forget_cached(ref)
        log.info("Slack app uninstalled from workspace %s; its tokens were deleted", ref.key)

    async def user_tokens_revoked(self, ref: WorkspaceRef, users: list[str]) -> None:
        for user in users:
            await self.installations.async_delete_installation(
                enterprise_id=ref.enterprise_id, team_id=None if ref.org_install else ref.team_id, user_id=user
            )

    def _forget_cached(self, ref: WorkspaceRef) -> None:
        self._cache.pop(ref.key, None)
