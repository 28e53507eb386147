"""What a Telegram message carries besides text, as the agent's media lines.

Files are referred to by ``file_id``; the link the agent gets is a signed gateway link (the Bot
API's download URL contains the bot token), resolved through ``getFile`` when followed.
Service messages (members joining, titles, pins, payments, forum topics...) carry none of the
fields read here and so produce nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from telegram import Message

from gateway import media
from gateway.media import Attachment

#: a file_id to the link the agent may follow
Linker = Callable[[str], str]


def media_lines(msg: Message, link: Linker) -> list[Attachment | str]:
    """The media of one message, in the order a person sees them (none for plain text)."""
    if msg.photo:
        best = msg.photo[-1]  # sizes come smallest first
        return [Attachment("photo", link(best.file_id), "image/jpeg", details=f"{best.width}x{best.height}")]
    if msg.sticker:
        s = msg.sticker
        mime = "video/webm" if s.is_video else "application/x-tgsticker" if s.is_animated else "image/webp"
        return [Attachment("sticker", link(s.file_id), mime)]
    if msg.voice:
        vn = msg.voice
        return [Attachment("voice message", link(vn.file_id), vn.mime_type, details=media.duration(vn.duration))]
    if msg.video_note:
        n = msg.video_note
        return [Attachment("round video message", link(n.file_id), "video/mp4", details=media.duration(n.duration))]
    if msg.animation:  # Telegram also sets ``document`` on these: the GIF is what the person sent
        gif = msg.animation
        return [Attachment("GIF", link(gif.file_id), gif.mime_type, gif.file_name, media.duration(gif.duration))]
    if msg.video:
        v = msg.video
        return [Attachment("video", link(v.file_id), v.mime_type, v.file_name, media.duration(v.duration))]
    if msg.audio:
        a = msg.audio
        title = " - ".join(x for x in (a.performer, a.title) if x) or a.file_name
        return [Attachment("audio file", link(a.file_id), a.mime_type, title, media.duration(a.duration))]
    if msg.document:
        d = msg.document
        return [Attachment("file", link(d.file_id), d.mime_type, d.file_name, media.size(d.file_size))]
    return _shared(msg)


def _shared(msg: Message) -> list[Attachment | str]:
    """Things shared without a file: places, contacts, polls, dice, stories."""
    if msg.venue:  # a venue also carries its location
        v = msg.venue
        return [media.location(v.location.latitude, v.location.longitude, f"{v.title}, {v.address}")]
    if msg.location:
        return [media.location(msg.location.latitude, msg.location.longitude)]
    if msg.contact:
        c = msg.contact
        return [media.contact(" ".join(x for x in (c.first_name, c.last_name) if x), c.phone_number)]
    if msg.poll:
        options = " / ".join(o.text for o in msg.poll.options)
        return [f"[The user sent a poll: {msg.poll.question} ({options})]"]
    if msg.dice:
        return [f"[The user rolled {msg.dice.emoji} and got {msg.dice.value}]"]
    if msg.story:
        return ["[The user shared a Telegram story]"]
    return []
