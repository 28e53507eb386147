"""Media in inbound messages, as the agent reads them: one short line per item, after the caption.

The agent (Chatbase) takes text only, so a photo, voice note, video, file, sticker, location or
contact becomes a line such as::

    [The user sent a voice message (audio/ogg, 0:07): https://gw.example/media/tg/…]

Every channel builds :class:`Attachment` items from its platform's payload and calls
:func:`message_text`, so the wording is the same everywhere. A link either is the platform's own
public URL (Twilio) or a signed gateway URL from :class:`gateway.media_links.MediaLinks`, for
platforms whose download URLs carry the bot's token or expire.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

#: at most this many items are described per message (a 10-photo album is still one line each)
MAX_ITEMS = 10


@dataclass(frozen=True, slots=True)
class Attachment:
    """One media item of an inbound message.

    ``kind`` is what a person would call it ("photo", "voice message", "file"...); ``details``
    are extras worth reading (a duration, a size); ``link`` is where the agent can fetch it.
    """

    kind: str
    link: str | None = None
    mime: str | None = None
    name: str | None = None
    details: str | None = None


def describe(item: Attachment) -> str:
    """The agent's line for one attachment."""
    what = with_article(item.kind)
    if item.name:
        what += f' "{_one_line(item.name)}"'
    extras = ", ".join(x for x in (item.mime, item.details) if x)
    if extras:
        what += f" ({extras})"
    return f"[The user sent {what}: {item.link}]" if item.link else f"[The user sent {what}]"


def location(latitude: float, longitude: float, label: str | None = None) -> str:
    """The agent's line for a shared location, with a map link it can follow."""
    where = f"{latitude:.6f}, {longitude:.6f}"
    if label:
        where += f" ({_one_line(label)})"
    query = urlencode({"mlat": f"{latitude:.6f}", "mlon": f"{longitude:.6f}"})
    return f"[The user shared a location: {where}: https://www.openstreetmap.org/?{query}]"


def contact(name: str, phone: str | None = None) -> str:
    """The agent's line for a shared contact card."""
    return f"[The user shared a contact: {_one_line(name)}{', ' + _one_line(phone) if phone else ''}]"


def message_text(caption: str | None, items: Sequence[Attachment | str]) -> str:
    """Caption first, then one line per item (an ``str`` item is a line already described)."""
    lines = [describe(i) if isinstance(i, Attachment) else i for i in items[:MAX_ITEMS]]
    if len(items) > MAX_ITEMS:
        lines.append(f"[… and {len(items) - MAX_ITEMS} more]")
    return "\n\n".join(p for p in [(caption or "").strip(), "\n".join(lines)] if p)


def kind_of(mime: str | None) -> str:
    """What to call an attachment known only by its MIME type."""
    major = (mime or "").split("/", 1)[0].lower()
    return {"image": "image", "video": "video", "audio": "audio file"}.get(major, "file")


def duration(seconds: object) -> str | None:
    """``0:07``, ``12:30``, ``1:02:03`` for a platform's duration in seconds."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        return None
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def size(octets: object) -> str | None:
    """``340 KB``, ``2.1 MB`` for a platform's size in bytes."""
    if not isinstance(octets, int) or isinstance(octets, bool) or octets <= 0:
        return None
    if octets < 1_000_000:
        return f"{max(1, round(octets / 1000))} KB"
    return f"{octets / 1_000_000:.1f} MB"


def with_article(kind: str) -> str:
    """``a photo``, ``an audio message``."""
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _one_line(text: str) -> str:
    """Names come from users: no line breaks or brackets that could pass for our own markup."""
    return " ".join(text.replace("[", "(").replace("]", ")").split())[:200]
