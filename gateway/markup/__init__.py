"""The agent's Markdown in each channel's markup.

One parse (:mod:`gateway.markup.walker`), one tree walker, and a small renderer per target:

========================  =====================================================================
``to_plain``              SMS, Messenger, Instagram: no markup, ``label (url)`` links
``to_email_text``         the text/plain part of an email (same as ``to_plain``)
``to_mrkdwn``             Slack's mrkdwn
``to_chat_html``          the six-tag HTML of Telegram's parse mode (always well-formed)
``to_whatsapp``           WhatsApp styles
``to_html``               a safe HTML fragment for email bodies
``to_speech``             sentences for Twilio ``<Say>``
``streaming_safe``        a partial answer made safe to render while it grows
========================  =====================================================================

Rendering never raises: a renderer bug is logged and the answer is sent as escaped text, because
losing the user's answer is worse than losing its formatting.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable

from gateway.markup.chat import (
    ChatHtmlRenderer,
    MrkdwnRenderer,
    PlainRenderer,
    WhatsAppRenderer,
    chat_html_escape,
    mrkdwn_escape,
)
from gateway.markup.html import HtmlRenderer
from gateway.markup.speech import SpeechRenderer
from gateway.markup.streaming import streaming_safe
from gateway.markup.walker import Renderer

__all__ = [
    "streaming_safe",
    "to_chat_html",
    "to_email_text",
    "to_html",
    "to_mrkdwn",
    "to_plain",
    "to_speech",
    "to_whatsapp",
]

log = logging.getLogger(__name__)


def _render(renderer: type[Renderer], markdown: str, fallback: Callable[[str], str]) -> str:
    try:
        return renderer().render(markdown)
    except Exception:
        log.exception("%s failed; sending the answer as escaped text", renderer.__name__)
        return fallback(markdown)


def _as_is(text: str) -> str:
    return text


def to_plain(markdown: str) -> str:
    """Plain text: no markup, links as ``label (url)``, ``- `` / ``1. `` lists, code verbatim."""
    return _render(PlainRenderer, markdown, _as_is)


def to_email_text(markdown: str) -> str:
    """The text/plain part of an email answer."""
    return to_plain(markdown)


def to_mrkdwn(markdown: str) -> str:
    """Slack mrkdwn: ``*bold*``, ``_italic_``, ``~strike~``, ``<url|label>``, ``&<>`` escaped."""
    return _render(MrkdwnRenderer, markdown, mrkdwn_escape)


def to_chat_html(markdown: str) -> str:
    """Telegram HTML: only ``b i s code pre a``, balanced, with ``<>&`` (and ``"``) escaped."""
    return _render(ChatHtmlRenderer, markdown, chat_html_escape)


def to_whatsapp(markdown: str) -> str:
    """WhatsApp: ``*bold*``, ``_italic_``, ``~strike~``, monospace; links as ``label (url)``."""
    return _render(WhatsAppRenderer, markdown, _as_is)


def to_html(markdown: str) -> str:
    """A safe HTML fragment for email: everything escaped, only tags generated here."""
    return _render(HtmlRenderer, markdown, lambda text: f"<p>{html.escape(text)}</p>")


def to_speech(markdown: str) -> str:
    """Sentences for ``<Say>``: no Markdown, code omitted, URLs spoken as their domain."""
    return _render(SpeechRenderer, markdown, _as_is)
