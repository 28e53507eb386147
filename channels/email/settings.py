"""Config keys of an ``email`` channel (SPEC §3) and the documented extras."""

from __future__ import annotations

from typing import Literal

import pydantic

from gateway.channel import ChannelSettings

Security = Literal["tls", "starttls", "none"]

_IMAP_PORTS = {"tls": 993, "starttls": 143, "none": 143}
_SMTP_PORTS = {"tls": 465, "starttls": 587, "none": 25}


class EmailSettings(ChannelSettings):
    """``[channels.<name>]`` with ``type = "email"``; the password is a secret and never printed."""

    imap_host: str
    #: default from imap_security: 993 for tls, else 143
    imap_port: int | None = pydantic.Field(None, ge=1, le=65535)
    imap_security: Security = "tls"
    smtp_host: str
    #: default from smtp_security: 465 for tls, 587 for starttls, 25 for none
    smtp_port: int | None = pydantic.Field(None, ge=1, le=65535)
    smtp_security: Security = "starttls"
    username: str
    password: pydantic.SecretStr
    #: the bot's own address: From of every reply, and never answered itself
    address: str
    mailbox: str = "INBOX"
    # -- extras --------------------------------------------------------------------------------
    #: SMTP login when it differs from the IMAP one; smtp_username = "" sends without AUTH
    smtp_username: str | None = None
    smtp_password: pydantic.SecretStr | None = None
    #: display name on replies ("Support Bot" <bot@example.com>)
    display_name: str = ""
    #: move answered mail to this folder instead of only marking it \Seen
    processed_mailbox: str | None = None
    #: seconds between checks when the server has no IDLE
    poll_interval: float = pydantic.Field(60.0, gt=0)
    #: auto-replies one sender may get per hour; mail beyond that is skipped (loop breaker)
    max_replies_per_hour: int = pydantic.Field(5, ge=1)
    #: on first start (or a UIDVALIDITY change) answer unseen mail up to this many days old; 0: none
    backlog_days: int = pydantic.Field(7, ge=0)
    #: longest wait between reconnect attempts, seconds
    reconnect_max: float = pydantic.Field(120.0, gt=0)
    #: PEM file of extra CA certificates to trust (self-signed IMAP/SMTP servers)
    tls_ca_file: str | None = None

    @pydantic.field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip().lower()
        local, at, domain = value.rpartition("@")
        if not at or not local or ("." not in domain and domain != "localhost"):
            raise ValueError("must be an email address like bot@example.com")
        return value

    @pydantic.field_validator("mailbox", "processed_mailbox")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c in value for c in '"\\\r\n')):
            raise ValueError("must be a folder name without quotes, backslashes or line breaks")
        return value

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def imap_port_number(self) -> int:
        return self.imap_port or _IMAP_PORTS[self.imap_security]

    @property
    def smtp_port_number(self) -> int:
        return self.smtp_port or _SMTP_PORTS[self.smtp_security]

    @property
    def smtp_login(self) -> tuple[str, str] | None:
        """(user, password) for SMTP AUTH, or None to send without it."""
        user = self.username if self.smtp_username is None else self.smtp_username
        if not user:
            return None
        secret = self.smtp_password if self.smtp_password is not None else self.password
        return user, secret.get_secret_value()
