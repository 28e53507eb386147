"""Splitting answers to a channel's size limit without losing or reordering anything."""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (maybe inside closing quotes or brackets) before whitespace; CJK full
# stops need no space after them.
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019\u00bb)\]]*\s+|[\u3002\uff01\uff1f]\s*")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
# Any whitespace, not only " ": a tab or no-break space is a word boundary too, and cutting next to
# it instead keeps a word whole.
_SPACE = re.compile(r"\s+")


def split_text(text: str, limit: int, *, numbered: bool = False) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters.

    Cuts at paragraph breaks first, then sentence ends, then spaces, and only inside a word
    when a single word is longer than the limit. Joining the parts with the whitespace that was
    cut reproduces every word in order. With ``numbered`` and more than one part, each part
    starts with ``(i/n)`` and the limit still holds including that prefix.
    """
    text = text.strip()
    if not text:
        return []
    if len(text) <= limit:
        return [text]
    if not numbered:
        return _split(text, limit)
    # The prefix width depends on the count; iterate until the count is stable.
    reserve = len("(1/2) ")
    while True:
        if limit - reserve < 1:
            raise ValueError(f"a limit of {limit} leaves no room for (i/n) numbering")
        parts = _split(text, limit - reserve)
        n = len(parts)
        width = len(f"({n}/{n}) ")
        if width <= reserve:
            return [f"({i}/{n}) {p}" for i, p in enumerate(parts, 1)]
        reserve = width


def _split(text: str, limit: int) -> list[str]:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = _best_cut(window, limit)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            parts.append(head)
    if rest:
        parts.append(rest)
    return parts


def _best_cut(window: str, limit: int) -> int:
    """Index to cut at: the last paragraph break, sentence end, line break or space within the limit."""
    floor = limit // 3  # a cut too early makes many tiny parts; prefer a lower-priority boundary
    para = max((m.start() for m in _PARAGRAPH.finditer(window) if m.start() <= limit), default=-1)
    if para > floor:
        return para
    sentence = max((m.end() for m in _SENTENCE_END.finditer(window) if m.end() <= limit), default=-1)
    if sentence > floor:
        return sentence
    line = window.rfind("\n", 0, limit + 1)
    if line > floor:
        return line
    space = max((m.start() for m in _SPACE.finditer(window) if 0 < m.start() <= limit), default=-1)
    if space > 0:
        return space
    return limit
