"""The agent's Markdown as Teams-flavoured Markdown.

Teams renders a Markdown subset in bot messages: emphasis, links, lists, code, quotes. Headings
are not rendered, so they become bold lines; images become links; ``<`` and ``>`` are escaped,
since Teams would read them as HTML. Code blocks are left exactly as written.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_INLINE = re.compile(r"([\\`*_\[\]~|])")
_LINE_START = re.compile(r"^(\s*)([#>+-]|\d+\.)", re.M)


def to_teams(markdown: str) -> str:
    out: list[str] = []
    fenced = False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            out.append(line)
            continue
        if fenced:
            out.append(line)
            continue
        heading = _HEADING.match(line)
        if heading:
            line = f"**{heading.group(1)}**" if heading.group(1) else ""
        line = _IMAGE.sub(lambda m: f"[{m.group(1) or m.group(2)}]({m.group(2)})", line)
        out.append(_escape_angles(line))
    return "\n".join(out)


def _escape_angles(line: str) -> str:
    """``<``/``>`` as entities, except a leading ``>`` (a quote) and inside inline code."""
    parts = line.split("`")
    for index in range(0, len(parts), 2):  # even parts are outside inline code
        text = parts[index]
        lead = ""
        if index == 0:
            quote = re.match(r"^(\s*(?:>\s*)+)", text)
            if quote:
                lead, text = quote.group(1), text[quote.end():]
        parts[index] = lead + text.replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def teams_escape(text: str) -> str:
    """Text someone typed, shown literally: no Markdown, no HTML (the support desk quotes it)."""
    escaped = _INLINE.sub(r"\\\1", text).replace("<", "&lt;").replace(">", "&gt;")
    return _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)
