"""Configuration: TOML with ``${ENV}`` and ``file:`` references, validated into frozen typed settings.

Every mistake becomes a :class:`ConfigError` whose text is one line naming the key. Channel
sections are validated by their own channel class (see :mod:`gateway.plugins`), so only the
sections the config names are ever imported.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pydantic

from gateway.budget import RateLimit, parse_rate_limit
from gateway.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
#: ``<type>_channel``: how a [handoff] section names its desk channel by the channel's type
_DESK_BY_TYPE = re.compile(r"([A-Za-z0-9-]+)_channel")
DEFAULT_API_BASE = "https://www.chatbase.co/api/v2"
#: the name of the agent ``[agent]`` configures (``[agents.<name>]`` add others)
DEFAULT_AGENT = "default"


class _Frozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class GatewaySettings(_Frozen):
    host: str = "0.0.0.0"
    port: int = pydantic.Field(8080, ge=0, le=65535)
    public_url: str = "http://localhost:8080"
    store: str = "sqlite:///.switchboard/state.db"
    admin_token: str | None = None
    #: idle time after which a conversation starts afresh (seconds)
    conversation_ttl: float = pydantic.Field(24 * 3600, gt=0)
    #: turns that may run at once across all conversations
    max_concurrency: int = pydantic.Field(64, ge=1)
    #: seconds that in-flight turns get to finish on SIGTERM
    shutdown_grace: float = pydantic.Field(20.0, ge=0)
    #: seconds one answer may take in all (tool rounds, retries) before the user gets an apology
    turn_timeout: float = pydantic.Field(300.0, gt=0)
    #: seconds an answer may wait out platform rate limits (429s) before it ends as failed; the
    #: time spent waiting does not count against ``turn_timeout``
    delivery_deadline: float = pydantic.Field(3600.0, gt=0)
    #: bound on agent rounds per answer (client actions)
    max_tool_rounds: int = pydantic.Field(10, ge=1, le=50)
    #: largest accepted request body, bytes
    max_body: int = pydantic.Field(1024 * 1024, ge=1024)
    #: messages per person per minute before a polite notice (0: no limit)
    user_rate_limit: int = pydantic.Field(30, ge=0)
    #: seconds a worker's claim on a conversation lasts without renewal (crash takeover time)
    lease_ttl: float = pydantic.Field(15.0, gt=0)
    #: seconds between scans of the journal for orphaned entries
    sweep_interval: float = pydantic.Field(5.0, gt=0)
    #: key of the signed media links the agent receives (docs/media.md); unset: one is generated
    #: and kept in the store. Use a ${ENV} or file: reference.
    media_secret: str | None = pydantic.Field(None, min_length=16)
    #: seconds a media link the agent received keeps working
    media_link_ttl: float = pydantic.Field(7 * 24 * 3600, gt=0)
    #: seconds a webhook waits for the store (parse and journal) before answering 503, so the
    #: platform retries instead of counting a timeout; well inside Slack's 3 s ack deadline
    webhook_store_timeout: float = pydantic.Field(1.0, gt=0)

    @pydantic.field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)


class AgentSettings(_Frozen):
    api_base: str = DEFAULT_API_BASE
    api_key: str = ""
    agent_id: str = ""
    #: seconds to wait for the first byte of an answer, and between bytes of a stream
    timeout: float = pydantic.Field(60.0, gt=0)
    #: attempts for 429/5xx/network failures before apologising
    max_attempts: int = pydantic.Field(4, ge=1, le=20)
    #: the API key's request budget, shared by every instance: "<requests>/<window>" or "off"
    rate_limit: str = "100/10s"

    @pydantic.field_validator("api_base")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)

    @pydantic.field_validator("rate_limit")
    @classmethod
    def _rate(cls, v: str) -> str:
        parse_rate_limit(v)
        return v

    @property
    def budget(self) -> RateLimit | None:
        """The parsed ``rate_limit`` (None: off)."""
        return parse_rate_limit(self.rate_limit)


class ToolSettings(_Frozen):
    url: str
    timeout: float = pydantic.Field(10.0, gt=0)
    headers: dict[str, str] = {}

    @pydantic.field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)


def _words(value: list[str]) -> list[str]:
    """Command words compare as lower-case, whitespace-collapsed text."""
    words = [" ".join(w.split()).lower() for w in value]
    if any(not w for w in words):
        raise ValueError("a command word cannot be empty")
    return words


class CommandSettings(_Frozen):
    """In-channel commands: each works when one of its words is the whole message (any case)."""

    new: list[str] = ["/new", "/reset"]
    retry: list[str] = ["/retry"]
    help: list[str] = ["/help"]
    link: list[str] = ["/link"]
    human: list[str] = ["/human"]

    @pydantic.field_validator("new", "retry", "help", "link", "human")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        return _words(v)

    @pydantic.model_validator(mode="after")
    def _distinct(self) -> CommandSettings:
        seen: dict[str, str] = {}
        for name in ("new", "retry", "help", "link", "human"):
            for word in getattr(self, name):
                if seen.setdefault(word, name) != name:
                    raise ValueError(f"{word!r} is a word of both {seen[word]} and {name}")
        return self


class LinkingSettings(_Frozen):
    """Cross-channel identity linking with one-time codes."""

    enabled: bool = True
    #: seconds a code stays valid
    code_ttl: float = pydantic.Field(600.0, gt=0, le=86400)
    #: wrong codes one identity may send per ``code_ttl`` before linking is refused for it
    max_attempts: int = pydantic.Field(5, ge=1, le=100)


class HandoffSettings(_Frozen):
    """Human handoff to a support desk (off unless a desk channel is named).

    The desk is the ``[channels.<name>]`` whose class can be a support desk. It is named by
    ``desk = "<name>"`` or, as configs have always done, by ``<type>_channel = "<name>"`` with the
    desk channel's type (``slack_channel = "support"``); :func:`parse_settings` turns the second
    spelling into the first and checks the type matches.
    """

    #: the [channels.<name>] whose support desk takes handoffs
    desk: str | None = None
    #: where the desk opens threads (a Slack channel id, C...; a Teams channel id, 19:...@thread.tacv2);
    #: the bot must be a member
    support_channel_id: str = ""
    #: the agent whose conversations can be handed off (unset: every agent's)
    agent: str | None = None
    #: the agent's client action that asks for a person
    action: str = "escalateToHuman"
    #: seconds without a staff reply after which the agent takes the conversation back
    timeout: float = pydantic.Field(3600.0, gt=0)
    #: staff messages in the thread that hand the conversation back (Slack eats a leading "/")
    resolve_words: list[str] = ["!resolve", "/resolve", "resolve"]
    #: recent messages copied into the thread (0: none)
    transcript_messages: int = pydantic.Field(20, ge=0, le=100)
    #: optional link to the transcript; ``{conversation_id}``, ``{agent_id}``, ``{user_id}`` are filled in
    transcript_url: str | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _desk_by_type(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        section = dict(data)
        for key in [k for k in section if isinstance(k, str) and _DESK_BY_TYPE.fullmatch(k)]:
            name = section.pop(key)
            if name is None:
                continue
            if section.get("desk") is not None:
                raise ValueError(f"{key} and desk both name the desk channel")
            section["desk"] = name
        return section

    @pydantic.field_validator("resolve_words")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        return _words(v)

    @property
    def enabled(self) -> bool:
        return bool(self.desk)


class LoggingSettings(_Frozen):
    """Log output; ``SWITCHBOARD_LOG_LEVEL`` and ``SWITCHBOARD_LOG_FORMAT`` override these."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"
    #: include message texts in turn logs (off: bodies are personal data)
    log_bodies: bool = False

    @pydantic.field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v


class Settings(_Frozen):
    """The whole configuration; ``channels`` stays raw until each channel class validates it."""

    gateway: GatewaySettings = GatewaySettings()
    agent: AgentSettings = AgentSettings()
    #: more agents, by name; a channel picks one with ``agent = "<name>"``
    agents: dict[str, AgentSettings] = {}
    channels: dict[str, dict[str, Any]] = {}
    tools: dict[str, ToolSettings] = {}
    commands: CommandSettings = CommandSettings()
    linking: LinkingSettings = LinkingSettings()
    handoff: HandoffSettings = HandoffSettings()
    logging: LoggingSettings = LoggingSettings()

    @property
    def public_url(self) -> str:
        return self.gateway.public_url.rstrip("/")

    @property
    def all_agents(self) -> dict[str, AgentSettings]:
        """Every agent by name: ``[agent]`` as ``default``, then the ``[agents.<name>]``."""
        return {DEFAULT_AGENT: self.agent, **self.agents}


def check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value


def interpolate(value: Any, path: str, env: Mapping[str, str]) -> Any:
    """Resolve references in every string; a missing one names itself and the key.

    ``"${NAME}"`` is replaced by the environment variable (anywhere in a string). A value that
    starts with ``file:`` is the stripped content of that file (Docker/Kubernetes secrets,
    systemd credentials): ``"file:/run/secrets/chatbase"``, or ``"file:${CREDENTIALS_DIRECTORY}/key"``.
    The file is read once, at load time; its content is never interpolated further.
    """
    if isinstance(value, str):
        if value.startswith(FILE_PREFIX):
            return _read_secret_file(_substitute(value[len(FILE_PREFIX):], path, env), path)
        return _substitute(value, path, env)
    if isinstance(value, dict):
        return {k: interpolate(v, f"{path}.{k}" if path else k, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


FILE_PREFIX = "file:"
#: a secret file bigger than this is a mistake (a certificate bundle, a log), not a key
_MAX_SECRET_FILE = 64 * 1024


def _substitute(text: str, path: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(sub, text)


def _read_secret_file(name: str, path: str) -> str:
    """The stripped text of a ``file:`` reference; errors name the key and the file, never content."""
    if not name.strip():
        raise ConfigError(f"{path}: file: reference without a file name")
    file = Path(name).expanduser()
    try:
        with file.open("rb") as f:
            data = f.read(_MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read secret file {file} ({exc.strerror or type(exc).__name__})") from None
    if len(data) > _MAX_SECRET_FILE:
        raise ConfigError(f"{path}: secret file {file} is over {_MAX_SECRET_FILE // 1024} KiB")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: secret file {file} is not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{path}: secret file {file} is empty")
    return text


def parse_settings(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Validate a parsed TOML document (channel sections are checked later, per type)."""
    data = interpolate(dict(raw), "", os.environ if env is None else env)
    channels = data.get("channels", {})
    if not isinstance(channels, dict):
        raise ConfigError("channels: must be a table of [channels.<name>] sections")
    for name, section in channels.items():
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"channels.{name}: a channel name is 1-63 letters, digits, '-' or '_' (it is a URL path)"
            )
        if not isinstance(section, dict):
            raise ConfigError(f"channels.{name}: must be a table")
        if "type" not in section:
            raise ConfigError(f"channels.{name}.type: required key is missing")
    lowered: dict[str, str] = {}
    for name in channels:
        # Names map to URL paths; two names differing only in case are a trap behind proxies.
        if name.lower() in lowered:
            raise ConfigError(f"channels.{name}: duplicate webhook name (also {lowered[name.lower()]!r})")
        lowered[name.lower()] = name
    if isinstance(data.get("handoff"), dict):
        _check_desk_type(data["handoff"], channels)
    try:
        settings = Settings.model_validate(data)
    except pydantic.ValidationError as exc:
        from gateway.channel import describe_validation_error

        raise ConfigError(describe_validation_error("", exc).lstrip(".")) from None
    _check_handoff(settings)
    _check_agents(settings)
    return settings


def _check_agents(settings: Settings) -> None:
    """Agent names are like channel names; every ``agent = "<name>"`` names a configured agent."""
    for name in settings.agents:
        if name == DEFAULT_AGENT:
            raise ConfigError(f"agents.{name}: the name {DEFAULT_AGENT!r} is the [agent] section's")
        if not _NAME.fullmatch(name):
            raise ConfigError(f"agents.{name}: an agent name is 1-63 letters, digits, '-' or '_'")
    known = settings.all_agents
    named = [(f"channels.{c}.agent", s.get("agent")) for c, s in settings.channels.items()]
    named.append(("handoff.agent", settings.handoff.agent))
    for key, agent in named:
        if agent is None:
            continue
        if not isinstance(agent, str) or agent not in known:
            raise ConfigError(f"{key}: there is no agent {agent!r} (known: {', '.join(sorted(known))})")


def _check_desk_type(handoff: Mapping[str, Any], channels: Mapping[str, Any]) -> None:
    """``[handoff] <type>_channel = name`` must name a channel of that type."""
    for key, name in handoff.items():
        named = _DESK_BY_TYPE.fullmatch(key)
        if named is None or name is None:
            continue
        target = channels.get(name) if isinstance(name, str) else None
        if target is None:
            raise ConfigError(f"handoff.{key}: there is no [channels.{name}] section")
        if target.get("type") != named.group(1):
            raise ConfigError(f"handoff.{key}: channels.{name} is not a {named.group(1)} channel")


def _check_handoff(settings: Settings) -> None:
    name = settings.handoff.desk
    if name is not None and name not in settings.channels:
        raise ConfigError(f"handoff.desk: there is no [channels.{name}] section")
    if name is not None and not settings.handoff.support_channel_id:
        raise ConfigError("handoff.support_channel_id: required when a desk channel is set")


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a TOML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    return parse_settings(raw, env)
