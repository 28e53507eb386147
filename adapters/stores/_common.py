"""What the three stores share: URL options, password masking, and the async context manager."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gateway.errors import ConfigError

#: how long a finished event key keeps deduplicating platform retries (Slack retries for hours,
#: email IMAP re-syncs can replay days later, so a week is generous without growing forever)
DEFAULT_DEDUP_TTL = 7 * 86400.0
#: how long an untouched conversation is kept before the store forgets it (garbage collection;
#: the gateway's own ``conversation_ttl`` decides when a conversation is *renewed*)
DEFAULT_CONVERSATION_TTL = 30 * 86400.0
#: every store understands these query options, e.g. ``sqlite:///state.db?dedup_ttl=2d``
OPTION_NAMES = ("dedup_ttl", "conversation_ttl")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*")
_PASSWORD_PARAM = re.compile(r"(?i)(password=)[^&]*")


@dataclass(frozen=True, slots=True)
class StoreOptions:
    dedup_ttl: float = DEFAULT_DEDUP_TTL
    conversation_ttl: float = DEFAULT_CONVERSATION_TTL


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe for logs, ``/status`` and error messages."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:***@{hostport}"
        return urlunsplit(parts._replace(netloc=netloc, query=_PASSWORD_PARAM.sub(r"\1***", parts.query)))
    except ValueError:
        # A URL too broken to parse may still hold a secret; show only its scheme.
        return url.partition(":")[0] + ":<unparseable>"


def bad_url(url: str, why: str) -> ConfigError:
    """The one-line error for a store URL the user got wrong (``gateway.store`` is the config key)."""
    return ConfigError(f"gateway.store: {why} (got {mask_url(url)!r})")


def parse_duration(url: str, name: str, text: str) -> float:
    """Seconds from ``"3600"``, ``"90s"``, ``"30m"``, ``"12h"`` or ``"7d"``; must be positive."""
    m = _DURATION.fullmatch(text)
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"] if m else math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise bad_url(url, f"option {name} must be a positive duration such as 3600, 30m, 12h or 7d")
    return seconds


def split_url(
    url: str,
    schemes: Collection[str],
    *,
    dedup_ttl: float | None = None,
    conversation_ttl: float | None = None,
    passthrough: Collection[str] = (),
) -> tuple[str, StoreOptions]:
    """Check the scheme and take Switchboard's query options out of ``url``.

    Returns the URL without those options and the options, where keyword arguments win over the
    URL. Query keys in ``passthrough`` stay in the URL (redis-py's own socket options); any other
    key is a mistake, reported rather than ignored so a typo cannot silently keep a default.
    """
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise bad_url(url, f"not a valid URL: {exc}") from None
    if parts.scheme not in schemes:
        wanted = ", ".join(f"{s}://" for s in schemes)
        raise bad_url(url, f"expected a URL starting with {wanted}")
    found: dict[str, float] = {}
    rest: list[tuple[str, str]] = []
    for key, value in query:
        if key in OPTION_NAMES:
            found[key] = parse_duration(url, key, value)
        elif key in passthrough:
            rest.append((key, value))
        else:
            known = ", ".join(sorted((*OPTION_NAMES, *passthrough)))
            raise bad_url(url, f"unknown option {key!r} (known: {known})")
    for name, given in (("dedup_ttl", dedup_ttl), ("conversation_ttl", conversation_ttl)):
        if given is not None:
            if not given > 0:
                raise ConfigError(f"gateway.store: {name} must be positive, not {given!r}")
            found[name] = float(given)
    # Cut the query off the text instead of urlunsplit(): that would turn sqlite://// into sqlite://.
    plain = url.partition("?")[0] + (f"?{urlencode(rest)}" if rest else "")
    return plain, StoreOptions(**found)


def ttl_ms(ttl: float) -> int:
    """A TTL in whole milliseconds, at least 1: Redis refuses zero and rounding down would."""
    return max(1, math.ceil(ttl * 1000))


class StoreBase:
    """``async with store:`` initializes and closes, like the other resources of the gateway."""

    url: str

    async def initialize(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
