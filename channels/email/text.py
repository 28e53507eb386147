"""The question inside a mail body: HTML to text, quoted history and signatures removed.

Mail clients append the whole earlier thread to every reply; the agent already has that history
in its conversation, so only what the person wrote this time is sent.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset", "figcaption", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
})
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_VOID = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr",
})
# Quoted history in HTML mail: <blockquote type="cite"> and the clients' reply containers.
_QUOTE_CLASSES = ("gmail_quote", "moz-cite-prefix", "yahoo_quoted", "protonmail_quote")
_QUOTE_IDS = ("appendonsend", "divrplyfwdmsg", "mail-editor-reference-message-container")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._hidden: list[str] = []  # open tags whose content is dropped
        self._pre = 0
        self._href: list[str | None] = []

    def _drops(self, tag: str, attrs: dict[str, str | None]) -> bool:
        if tag in _SKIP or tag == "blockquote":
            return True
        classes = (attrs.get("class") or "").lower()
        ident = (attrs.get("id") or "").lower()
        return any(c in classes for c in _QUOTE_CLASSES) or ident in _QUOTE_IDS

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._hidden:
            if tag not in _VOID:
                self._hidden.append(tag)
            return
        amap = dict(attrs)
        if tag not in _VOID and self._drops(tag, amap):
            self._hidden.append(tag)
            return
        if tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in _BLOCK:
            self.out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "h4", "h5", "h6", "table") else "\n")
        if tag == "pre":
            self._pre += 1
        elif tag == "a":
            self._href.append(amap.get("href"))
        elif tag == "img" and amap.get("alt"):
            self.out.append(str(amap["alt"]))

    def handle_endtag(self, tag: str) -> None:
        if self._hidden:
            # Tolerate unbalanced markup: close up to the matching open tag if there is one.
            if tag in self._hidden:
                while self._hidden and self._hidden.pop() != tag:
                    pass
            return
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        elif tag == "a" and self._href:
            href = self._href.pop()
            text = self.out[-1].strip() if self.out else ""
            if href and href.startswith(("http://", "https://")) and href != text:
                self.out.append(f" ({href})")
        if tag in _BLOCK and tag != "li":
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.out.append(data if self._pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable text of an HTML mail body, without scripts, styles and quoted replies."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient, but a broken mail must never stop the channel
        return re.sub(r"<[^>]*>", " ", html).strip()
    lines = [line.strip() for line in "".join(parser.out).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_ATTRIBUTION = re.compile(
    r"^\s*(on|le|am|el|il|op|em|den|w dniu)\b.{0,300}?\b"
    r"(wrote|écrit|schrieb|escribió|ha scritto|scritto|geschreven|escreveu|skrev|napisał)\s*:\s*$",
    re.IGNORECASE,
)
_ORIGINAL = re.compile(r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine)\s*-{2,}\s*$",
                       re.IGNORECASE)
_OUTLOOK_RULE = re.compile(r"^\s*_{10,}\s*$")
_HEADER_FROM = re.compile(r"^\s*\*?(from|von|de)\s*:\*?\s", re.IGNORECASE)
_HEADER_NEXT = re.compile(r"^\s*\*?(sent|date|gesendet|envoyé|to|an|à|subject|betreff|objet)\s*:", re.IGNORECASE)
_SIGNATURE = re.compile(r"^(-- ?|--)$")
_MOBILE = re.compile(r"^\s*(sent from my |get outlook for |sent from (mail|yahoo mail) for )", re.IGNORECASE)


def _history_start(lines: list[str]) -> tuple[int, int] | None:
    """Where the quoted history begins: (first line, how many lines the attribution takes)."""
    for i, line in enumerate(lines):
        if _ATTRIBUTION.match(line) or _ORIGINAL.match(line):
            return i, 1
        # Clients wrap long attributions: "On Mon, 1 Jan 2024 at 10:00, Alice <a@example.org>\nwrote:"
        if i + 1 < len(lines) and _ATTRIBUTION.match(line.rstrip() + " " + lines[i + 1].strip()):
            return i, 2
        if _OUTLOOK_RULE.match(line) and any(_HEADER_FROM.match(w) for w in lines[i + 1 : i + 3]):
            return i, 1
        if _HEADER_FROM.match(line) and any(_HEADER_NEXT.match(w) for w in lines[i + 1 : i + 5]):
            return i, 1
    return None


def _is_quote(line: str) -> bool:
    return line.lstrip().startswith(">")


def strip_quoted(text: str) -> str:
    """What the sender wrote this time: no quoted history, ``>`` lines, or signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found = _history_start(lines)
    if found is not None:
        start, span = found
        if any(line.strip() for line in lines[:start] if not _is_quote(line)):
            lines = lines[:start]
        else:
            # Bottom-posting: the answer follows the quote; drop only the attribution.
            lines = lines[:start] + lines[start + span :]
    lines = [line for line in lines if not _is_quote(line)]
    for i, line in enumerate(lines):
        if _SIGNATURE.match(line) or _MOBILE.match(line):
            lines = lines[:i]
            break
    cleaned = "\n".join(line.rstrip() for line in lines).strip()
    return re.sub(r"\n{3,}", "\n\n", cleaned)
