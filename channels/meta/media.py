"""Attachments of Messenger and Instagram messages, as the agent's media lines.

Meta's attachment URLs (``scontent``/``lookaside`` CDN) carry no token but expire, so the agent
gets a signed gateway link whose reference holds the CDN URL and the message id: when the CDN
URL has expired, the gateway asks Graph for the message's attachments afresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gateway import media
from gateway.media import Attachment

#: a reference (see :func:`reference`) to the link the agent may follow
Linker = Callable[[str], str]

#: Messenger's "like" button sends one of these stickers (small, medium, large thumbs up)
LIKE_STICKERS = frozenset({369239263222822, 369239343222814, 369239383222810})
_KINDS = {"image": "photo", "video": "video", "audio": "audio message", "file": "file",
          "reel": "reel", "ig_reel": "reel", "ig_post": "post", "share": "shared post",
          "story_mention": "story mention", "animated_image": "GIF", "sticker": "sticker"}


def reference(url: str, mid: str, index: int) -> str:
    """What the signed link carries: the CDN URL, and where to look for a fresh one."""
    return json.dumps({"u": url, "m": mid, "i": index}, separators=(",", ":"))


def parse_reference(ref: str) -> tuple[str, str, int]:
    """``(url, mid, index)`` of a :func:`reference` (raises ValueError on anything else)."""
    data = json.loads(ref)
    return str(data["u"]), str(data["m"]), int(data["i"])


def sticker_text(message: dict[str, Any]) -> str | None:
    """The like button's thumbs up, which Meta sends as a sticker: 👍 is what the person said."""
    for item in _attachments(message):
        payload = item.get("payload")
        if isinstance(payload, dict) and payload.get("sticker_id") in LIKE_STICKERS:
            return "👍"
    return None


def media_lines(message: dict[str, Any], mid: str, link: Linker) -> list[Attachment | str]:
    """One line per attachment of ``message`` (none for text)."""
    lines: list[Attachment | str] = []
    for index, item in enumerate(_attachments(message)):
        kind, payload = item.get("type"), item.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        url = payload.get("url")
        if kind == "fallback" and isinstance(url, str) and url:  # a shared link: public, nothing to proxy
            title = payload.get("title")
            lines.append(f"[The user shared a link{': ' + str(title) if title else ''}: {url}]")
        elif kind == "fallback":  # Meta's word for a share it does not describe
            lines.append("[The user shared something the platform does not pass on to apps]")
        elif kind == "location" and isinstance(payload.get("coordinates"), dict):
            where = payload["coordinates"]
            lines.append(media.location(float(where.get("lat", 0)), float(where.get("long", 0)),
                                        item.get("title") if isinstance(item.get("title"), str) else None))
        elif kind == "template":
            lines.append("[The user sent a structured message (template) the gateway cannot show]")
        elif isinstance(url, str) and url.startswith(("https://", "http://")):
            label = "sticker" if "sticker_id" in payload else _KINDS.get(str(kind), "attachment")
            title = payload.get("title") if isinstance(payload.get("title"), str) else None
            lines.append(Attachment(label, link(reference(url, mid, index)), name=title))
        else:  # expired stories and the like arrive without a URL
            what = media.with_article(_KINDS.get(str(kind), "attachment"))
            lines.append(f"[The user sent {what} that is no longer available]")
    return lines


def story_reply_line(message: dict[str, Any], mid: str, link: Linker) -> str | None:
    """Instagram: the story a message answers (``reply_to.story``), which the text alone lacks."""
    reply_to = message.get("reply_to")
    story = reply_to.get("story") if isinstance(reply_to, dict) else None
    url = story.get("url") if isinstance(story, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return None
    # index -1: Graph lists no attachment for it, so an expired story link answers 404, as the story is gone
    return f"[The user replied to a story: {link(reference(url, mid, -1))}]"


def _attachments(message: dict[str, Any]) -> list[dict[str, Any]]:
    items = message.get("attachments")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
