"""Text for Twilio ``<Say>``: plain sentences a voice can read.

No Markdown survives, code is not read out, and a URL becomes "a link to example.com" instead of
being spelled character by character.
"""

from __future__ import annotations

import re
from itertools import zip_longest
from urllib.parse import urlsplit

from gateway.markup.walker import Renderer, same_target

_BARE_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_TRAILING_PUNCT = ".,;:!?)]}'\""
_STRAY_MARKS = re.compile(r"[*`]+")
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_SPACES = re.compile(r"[ \t]{2,}")
_HOST = re.compile(r"[\w-]+(?:\.[\w-]+)*")
CODE_OMITTED = "(code omitted)"


def place(url: str) -> str:
    """How a URL is spoken: its domain only."""
    if url.lower().startswith("mailto:"):
        return url[len("mailto:") :]
    if url.lower().startswith("www."):
        url = "http://" + url
    try:
        host = urlsplit(url).hostname
    except ValueError:  # e.g. a broken IPv6 literal
        host = None
    # A host that is not a plain name (percent-escapes, odd bytes) would be spelled out: skip it.
    if not host or not _HOST.fullmatch(host):
        return "a link"
    return f"a link to {host.removeprefix('www.')}"


def _speak_url(match: re.Match[str]) -> str:
    url = match.group()
    stripped = url.rstrip(_TRAILING_PUNCT)
    # Punctuation after a URL belongs to the sentence, which TTS needs to pause correctly.
    return place(stripped) + url[len(stripped) :]


def _sentence(text: str) -> str:
    text = text.strip()
    return text + "." if text and text[-1] not in ".!?…:;" else text


def _drop_marks(match: re.Match[str]) -> str:
    # A lone "*" between spaces is arithmetic ("2 * 3"); one glued to a word is leftover markup.
    text, start, end = match.string, match.start(), match.end()
    isolated = (start == 0 or text[start - 1].isspace()) and (end == len(text) or text[end].isspace())
    return match.group() if isolated else ""


class SpeechRenderer(Renderer):
    heading_style = None
    table_header_style = None
    item_sep = " "
    quote_prefix = ""
    rule = ""
    softbreak = " "
    hardbreak = " "

    def text(self, text: str) -> str:
        # Raw HTML in an answer is shown as text elsewhere, but read aloud it is only noise.
        return _BARE_URL.sub(_speak_url, _TAG.sub("", text))

    def paragraph(self, inner: str, tight: bool) -> str:
        # Inside a list each paragraph is its own sentence, so items don't run together.
        return _sentence(inner) if self.depth else inner

    def code_block(self, code: str, lang: str) -> str:
        return CODE_OMITTED

    def link(self, label: str, url: str, label_text: str) -> str:
        if not label.strip() or same_target(label_text, url):
            return place(url)
        return f"{label} ({place(url)})"

    def image(self, alt: str, src: str) -> str:
        return self.text(alt)

    def heading(self, inner: str, level: int) -> str:
        return _sentence(inner)

    def list_block(self, items: list[str], ordered: bool, start: int) -> str:
        return " ".join(_sentence(item) for item in items if item.strip())

    def blockquote(self, inner: str) -> str:
        return inner

    def table(self, header: list[str], rows: list[list[str]]) -> str:
        if not rows:
            return _sentence(", ".join(cell for cell in header if cell.strip()))
        spoken = []
        for row in rows:
            pairs = zip_longest(header, row, fillvalue="")
            cells = [f"{name}: {cell}" if name.strip() else cell for name, cell in pairs if cell.strip()]
            spoken.append(_sentence(", ".join(cells)))
        return " ".join(spoken)

    def finish(self, out: str) -> str:
        out = _STRAY_MARKS.sub(_drop_marks, out)
        lines = (_SPACES.sub(" ", line).strip() for line in out.split("\n"))
        return "\n".join(lines).strip()
