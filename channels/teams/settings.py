"""``[channels.<name>]`` keys of a ``teams`` channel."""

from __future__ import annotations

import re
from typing import Literal

import pydantic

from gateway.channel import ChannelSettings
from gateway.config import check_url

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Bot Framework's OpenID metadata: the keys the Teams channel signs its requests with
BOT_FRAMEWORK_METADATA = "https://login.botframework.com/v1/.well-known/openidconfiguration"
#: where proactive messages (the support desk) go when no activity named a service URL yet
TEAMS_SERVICE_URL = "https://smba.trafficmanager.net/teams/"


class TeamsSettings(ChannelSettings):
    """An Azure Bot registration (app id + secret or certificate) talking to Teams."""

    #: the Microsoft App ID of the Azure Bot (a GUID); tokens must be issued to it
    app_id: str
    #: a client secret of that app registration
    app_password: str | None = pydantic.Field(None, repr=False)
    #: instead of a secret: a PEM file holding the app's certificate and its private key
    certificate_path: str | None = None
    #: the Entra tenant of a single-tenant app (tokens come from and are accepted for it)
    tenant_id: str | None = None
    #: the Bot Connector service for proactive messages (support desk threads); replies use the
    #: service URL each activity names
    api_base: str = TEAMS_SERVICE_URL
    #: Entra ID's login host: client-credential tokens, and Entra's OpenID metadata
    login_base: str = "https://login.microsoftonline.com"
    #: Bot Framework's OpenID metadata document (its ``jwks_uri`` signs inbound requests)
    openid_metadata: str = BOT_FRAMEWORK_METADATA
    #: seconds between interim edits of an answer in group chats and channels, and between
    #: streaming chunks in personal chats (Teams allows about one per second)
    edit_interval: float = pydantic.Field(1.5, ge=0.05, le=60)
    #: stream answers in personal chats with Teams' streaming protocol (else post, then edit)
    streaming: bool = True
    #: "builtin": Teams' own 👍/👎 under answers; "card": Adaptive Card buttons (with retry); "off"
    feedback: Literal["builtin", "card", "off"] = "builtin"
    #: what the informative update shows while the agent works (personal chats)
    thinking_text: str = pydantic.Field("Thinking…", min_length=1, max_length=1000)

    @pydantic.field_validator("app_id")
    @classmethod
    def _app_id(cls, value: str) -> str:
        if not _GUID.fullmatch(value):
            raise ValueError("expected the Microsoft App ID of the Azure Bot, a GUID like 00000000-0000-...")
        return value.lower()

    @pydantic.field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not _GUID.fullmatch(value):
            raise ValueError("expected the Directory (tenant) ID, a GUID")
        return value.lower() if value else None

    @pydantic.field_validator("api_base", "login_base", "openid_metadata")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @pydantic.model_validator(mode="after")
    def _one_credential(self) -> TeamsSettings:
        if sum(1 for credential in (self.app_password, self.certificate_path) if credential) != 1:
            raise ValueError("set one of app_password (a client secret) or certificate_path")
        return self

    @property
    def service_url(self) -> str:
        return self.api_base.rstrip("/") + "/"

    @property
    def token_endpoint(self) -> str:
        tenant = self.tenant_id or "botframework.com"
        return f"{self.login_base.rstrip('/')}/{tenant}/oauth2/v2.0/token"

    @property
    def entra_metadata(self) -> str | None:
        """Entra ID's OpenID metadata for a single-tenant app (its tokens may call us too)."""
        if not self.tenant_id:
            return None
        return f"{self.login_base.rstrip('/')}/{self.tenant_id}/v2.0/.well-known/openid-configuration"

    @property
    def issuers(self) -> frozenset[str]:
        """Who may sign an inbound request: Bot Framework, and Entra ID for our own tenant."""
        issuers = {"https://api.botframework.com"}
        if self.tenant_id:
            issuers |= {f"https://sts.windows.net/{self.tenant_id}/",
                        f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"}
        return frozenset(issuers)
