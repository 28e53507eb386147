"""Built-in client-side tools, registered under ``switchboard.tools`` like third-party ones."""

from __future__ import annotations

import datetime as dt
from typing import Any


async def get_current_time(arguments: Any, context: Any) -> dict[str, str]:
    """The gateway's current time in UTC (and in ``arguments["timezone"]`` when it is known)."""
    now = dt.datetime.now(dt.UTC)
    result = {"utc": now.isoformat(timespec="seconds")}
    tz_name = arguments.get("timezone") if isinstance(arguments, dict) else None
    if isinstance(tz_name, str):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            result["local"] = now.astimezone(ZoneInfo(tz_name)).isoformat(timespec="seconds")
            result["timezone"] = tz_name
        except (ZoneInfoNotFoundError, ValueError):
            result["error"] = f"unknown timezone {tz_name!r}"
    return result
