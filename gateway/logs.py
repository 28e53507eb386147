"""Log output: plain text or JSON lines, with per-turn context fields and secrets redacted.

* :func:`log_context` binds fields (``event_id``, ``channel``, ``conversation``) for the code
  running inside it, so every line a turn logs, in the core or in a channel, carries them.
* Structured fields passed as ``extra=`` (``kind``, ``duration_ms``, ``outcome``...) become JSON
  keys, or ``key=value`` pairs in text mode.
* Every configured secret (API keys, tokens, passwords, secret ``${ENV}``/``file:`` values, the
  store password, tool header values) is replaced by ``***`` in the finished line, whatever
  logged it: a token inside a URL logged by a library is caught too.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from gateway.config import LoggingSettings, Settings

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("switchboard_log", default=None)
#: attributes every LogRecord has; anything else on a record came in through ``extra=``
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
#: config keys whose values are secrets, wherever they appear (channel sections, [agent], ...)
_SECRET_KEY = re.compile(r"(?i)(token|secret|password|passwd|api_key|apikey|private_key|credentials?)$")
REDACTED = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line emitted inside the block (this task and its children)."""
    merged = {**(_CONTEXT.get() or {}), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The context and ``extra=`` fields of a record."""
    extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
    return {**(getattr(record, "_context", None) or _CONTEXT.get() or {}), **extra}


class _ContextFilter(logging.Filter):
    """Captures the context at the time of logging (a handler may format it later)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record._context = dict(_CONTEXT.get() or {})
        return True


class Redactor:
    """Replaces known secret strings; longest first, so a secret containing another is whole."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class TextFormatter(logging.Formatter):
    """The classic one-line format, then ``key=value`` fields, secrets redacted."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = fields_of(record)
        if fields:
            line += " " + " ".join(f"{k}={_short(v)}" for k, v in fields.items())
        return self.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, then the fields."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            doc.setdefault(key, value if isinstance(value, int | float | bool) or value is None else str(value))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        # Redact before encoding (a secret with a quote would be escaped and slip through), and
        # after, for anything the encoder produced from the pieces.
        doc = {k: self.redact(v) if isinstance(v, str) else v for k, v in doc.items()}
        return self.redact(json.dumps(doc, ensure_ascii=False, default=str))


def secrets_of(settings: Settings) -> list[str]:
    """Every configured value that must never appear in a log line."""
    found: list[str] = [settings.agent.api_key, settings.gateway.admin_token or "",
                        settings.gateway.media_secret or ""]
    found += _store_secrets(settings.gateway.store)
    for tool in settings.tools.values():
        found += list(tool.headers.values())
    for section in settings.channels.values():
        found += list(_secret_values(section))
    return [s for s in found if s]


def _secret_values(section: Mapping[str, Any]) -> Iterator[str]:
    for key, value in section.items():
        if isinstance(value, Mapping):
            yield from _secret_values(value)
        elif isinstance(value, str) and _SECRET_KEY.search(key):
            yield value


def _store_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password, unquote(password)] if password else []
    found += [unquote(v) for k, _, v in (p.partition("=") for p in parts.query.split("&")) if k == "password" and v]
    return found


def configure_logging(
    settings: LoggingSettings,
    secrets: Iterable[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install the root handler for ``settings`` (``SWITCHBOARD_LOG_LEVEL``/``_FORMAT`` win)."""
    env = os.environ if env is None else env
    level = env.get("SWITCHBOARD_LOG_LEVEL", settings.level).upper()
    fmt = env.get("SWITCHBOARD_LOG_FORMAT", settings.format).lower()
    redact = Redactor(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    handler.addFilter(_ContextFilter())
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # These log full request URLs at INFO, and Telegram's Bot API puts the bot token in the URL;
    # the redactor would catch it, but there is no reason to produce the line at all.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


def _short(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if not text or any(c.isspace() or c in "\"=" for c in text) else text
