"""The Teams app package: ``manifest.json`` plus two icons, zipped, ready to upload to Teams.

The manifest declares the bot (personal, group chat and team scopes) with the Azure Bot's app id,
and resource-specific consent to read channel messages (``ChannelMessage.Read.Group``), so staff
answering a human-handoff thread need not @mention the bot. Icons are drawn here (a speech bubble
on the accent colour, and its white outline), so the package needs no binary files.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

from channels.teams.settings import TeamsSettings

SCHEMA = "https://developer.microsoft.com/en-us/json-schemas/teams/v1.19/MicrosoftTeams.schema.json"
ACCENT = (0x46, 0x4E, 0xB8)


def manifest(settings: TeamsSettings, *, name: str, public_url: str) -> dict[str, Any]:
    site = public_url.rstrip("/")
    return {
        "$schema": SCHEMA,
        "manifestVersion": "1.19",
        "version": "1.0.0",
        "id": settings.app_id,
        "developer": {"name": name, "websiteUrl": site, "privacyUrl": site, "termsOfUseUrl": site},
        "name": {"short": name[:30], "full": name[:100]},
        "description": {"short": f"{name}: answers from our AI agent"[:80],
                        "full": f"{name} answers questions with our AI agent, and hands over to a person when needed."},
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": "#{:02X}{:02X}{:02X}".format(*ACCENT),
        "bots": [{"botId": settings.app_id, "scopes": ["personal", "groupChat", "team"],
                  "supportsFiles": False, "isNotificationOnly": False}],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [],
        "webApplicationInfo": {"id": settings.app_id, "resource": f"api://botid-{settings.app_id}"},
        "authorization": {"permissions": {"resourceSpecific": [
            {"name": "ChannelMessage.Read.Group", "type": "Application"},
        ]}},
    }


def package(settings: TeamsSettings, *, name: str, public_url: str) -> bytes:
    """The zip Teams takes ("Upload a custom app"): manifest.json, color.png, outline.png."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest(settings, name=name, public_url=public_url), indent=2))
        archive.writestr("color.png", _png(192, _bubble(192, (*ACCENT, 255), (255, 255, 255, 255))))
        archive.writestr("outline.png", _png(32, _bubble(32, (0, 0, 0, 0), (255, 255, 255, 255))))
    return buffer.getvalue()


def _bubble(size: int, background: tuple[int, ...], ink: tuple[int, ...]) -> Callable[[int, int], tuple[int, ...]]:
    """A speech bubble: an ellipse with a tail, in ``ink`` on ``background``."""
    cx, cy, rx, ry = size / 2, size * 0.45, size * 0.36, size * 0.28

    def pixel(x: int, y: int) -> tuple[int, ...]:
        inside = ((x + 0.5 - cx) / rx) ** 2 + ((y + 0.5 - cy) / ry) ** 2 <= 1
        tail = size * 0.3 <= x <= size * 0.45 and cy <= y <= size * 0.85 and (y - cy) <= (size * 0.45 - x) * 2.5
        return ink if inside or tail else background

    return pixel


def _png(size: int, pixel: Callable[[int, int], tuple[int, ...]]) -> bytes:
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(size)) for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
