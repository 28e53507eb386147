"""Agent Markdown to each channel's markup (stub; full renderers land with the markdown work)."""

from __future__ import annotations

import re


def to_plain(markdown: str) -> str:
    """Plain text: Markdown syntax removed, link targets kept as URLs."""
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", markdown)
    text = re.sub(r"(\*\*|__|\*|_|~~|`)", "", text)
    return re.sub(r"^#+\s*", "", text, flags=re.M)
