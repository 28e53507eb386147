"""Files shared in Slack messages, as the agent's media lines.

A Slack file's ``url_private`` only answers with the bot token in an ``Authorization`` header, so
the agent gets a signed gateway link carrying the file id; following it asks ``files.info`` for
the current download URL (needs the ``files:read`` scope) and fetches it with the token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway import media
from gateway.media import Attachment

#: a file id to the link the agent may follow
Linker = Callable[[str], str]


def file_lines(event: dict[str, Any], link: Linker) -> list[Attachment | str]:
    """One line per file of a message event (deleted files are left out)."""
    files = event.get("files")
    lines: list[Attachment | str] = []
    for item in files if isinstance(files, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or item.get("mode") == "tombstone":
            continue
        mime = item.get("mimetype") if isinstance(item.get("mimetype"), str) else None
        name = item.get("name") or item.get("title")
        details = media.size(item.get("size")) if not str(mime or "").startswith(("audio/", "video/")) else None
        lines.append(Attachment(_kind(mime, item), link(item["id"]), mime, name if isinstance(name, str) else None,
                                details or _duration(item)))
    return lines


def _kind(mime: str | None, item: dict[str, Any]) -> str:
    if item.get("subtype") == "slack_audio":
        return "audio clip"
    if item.get("subtype") == "slack_video":
        return "video clip"
    return media.kind_of(mime)


def _duration(item: dict[str, Any]) -> str | None:
    millis = item.get("duration_ms")
    return media.duration(millis / 1000) if isinstance(millis, int) else None
