"""An HTML mail body as the text a person sees, without the quoted thread and signature the client marked.

Clients mark what they append: Gmail's ``gmail_quote`` and ``gmail_signature``, ``<blockquote>``,
Thunderbird's ``moz-cite-prefix``, Hotmail's ``<hr id="stopSpelling">`` and Outlook's
``divRplyFwdMsg`` (everything below is the old mail), Outlook's header block in a ``<div>`` with a
top border (turned into Outlook's plain-text rule, and judged as text).
"""

from __future__ import annotations

import re

import lxml.html
from lxml import etree

_CUT_IDS = {"stopspelling", "divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container"}
_DROP_CLASSES = ("gmail_quote", "gmail_signature", "moz-cite-prefix", "moz-signature", "yahoo_quoted",
                 "protonmail_quote")
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
_BLOCK = _PARAGRAPH | {"div", "tr", "li", "pre", "hr", "blockquote", "dd", "dt", "section", "header", "footer"}
_PARSER = lxml.html.HTMLParser(encoding="utf-8")
#: what a <div style="border-top: …"> becomes: the rule Outlook writes above a header block in plain text
OUTLOOK_RULE = "_" * 32


def html_to_text(html: str, keep_quotes: bool = False) -> str:
    """Readable text of an HTML body; ``keep_quotes`` keeps what the client marked as quoted."""
    if not html.strip():
        return ""
    try:
        # As UTF-8 bytes: lxml refuses str input that carries an XML encoding declaration.
        root = lxml.html.document_fromstring(html.encode("utf-8", "replace"), parser=_PARSER)
    except (etree.ParserError, ValueError):
        return re.sub(r"<[^>]*>", " ", html).strip()
    for el in list(root.iter("script", "style", "head", "title", etree.Comment)):
        el.drop_tree()  # drop_tree keeps the text that follows the element
    if not keep_quotes:
        _remove_quotes(root)
    out: list[str] = []
    for event, el in etree.iterwalk(root, events=("start", "end")):
        tag = el.tag if isinstance(el.tag, str) else ""
        if event == "start":
            mark = "\x00- " if tag == "li" else "\x00\n\x00" if tag in _PARAGRAPH else "\x00" if tag in _BLOCK else ""
            out.append(("\n" if tag == "br" else mark) + (el.get("alt", "") if tag == "img" else "") + _space(el.text))
        else:
            href = el.get("href", "") if tag == "a" else ""
            if href.startswith(("http://", "https://")) and href != (el.text_content() or "").strip():
                out.append(f" ({href})")
            out.append(("\x00\n" if tag in _PARAGRAPH else "\x00" if tag in _BLOCK else "") + _space(el.tail))
    # \x00 marks a block boundary: one line break, plus one per <br>, except a <br> ending a block's last line.
    text = re.sub(r"[\x00\s]*\x00[\x00\s]*", lambda m: "\n" * (1 + m[0].count("\n") - m[0].startswith("\n")),
                  "".join(out))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.strip() for line in text.split("\n"))).strip()


def _remove_quotes(root: lxml.html.HtmlElement) -> None:
    for el in list(root.iter()):
        if el.getparent() is None or not isinstance(el.tag, str):
            continue
        ident, classes, style = (el.get(a, "").lower().replace(" ", "") for a in ("id", "class", "style"))
        if ident in _CUT_IDS:
            _cut_from(el)
        elif el.tag == "blockquote" or any(c in classes for c in _DROP_CLASSES):
            el.drop_tree()
        elif el.tag == "div" and re.search(r"border-top(-style)?:(none;)?solid|border-top-width", style):
            el.text = f"\n{OUTLOOK_RULE}\n{el.text or ''}"


def _space(text: str | None) -> str:
    return re.sub(r"\s+", " ", text) if text else ""


def _cut_from(el: lxml.html.HtmlElement) -> None:
    """Remove ``el`` and everything after it in document order."""
    node = el
    while (parent := node.getparent()) is not None:
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)  # with its tail: the text after it goes too
        node = parent
    el.getparent().remove(el)
