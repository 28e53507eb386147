"""One Markdown parse and one tree walker shared by every target markup.

The agent's Markdown is parsed once with markdown-it-py (CommonMark + strikethrough + tables, raw
HTML off so ``<b>`` in an answer is text, not markup). :class:`Renderer` walks the syntax tree and
asks small hooks how each construct looks; its defaults lay blocks out as chat text (blank line
between blocks, bullets, ``> `` quotes), so a chat target only names its markers and escaping.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

# markdown-it stops parsing (and silently drops the rest) past max_nesting; 50 is far beyond any
# real answer yet keeps the parser's and our recursion well inside Python's default limit.
MAX_NESTING = 50

_PARSER = MarkdownIt("commonmark", {"html": False, "maxNesting": MAX_NESTING}).enable(["strikethrough", "table"])
_ABSOLUTE_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_STYLES = ("strong", "em", "s")


def parse(markdown: str) -> SyntaxTreeNode | None:
    """The syntax tree, or None when the input nests so deep that the parser would drop text."""
    tokens = _PARSER.parse(markdown)
    if any(token.level >= MAX_NESTING - 1 for token in tokens):
        return None
    return SyntaxTreeNode(tokens)


def is_absolute(url: str) -> bool:
    """Chat platforms only link absolute URLs; a relative one would be rejected or dead."""
    return bool(_ABSOLUTE_URL.match(url))


def same_target(label: str, url: str) -> bool:
    """Whether a link's visible text already is its URL (autolinks), so it need not be repeated."""
    label = label.strip().rstrip("/").lower()
    bare = re.sub(r"^(?:[a-z][a-z0-9+.-]*:(?://)?)?(?:www\.)?", "", unquote(url).lower()).rstrip("/")
    # [example.com](https://example.com/) says the same twice; so does <a@b.example>.
    return label in {url.lower(), unquote(url).lower(), bare} or label.removeprefix("www.") == bare


def plain_text(node: SyntaxTreeNode) -> str:
    """The text of an inline subtree without any markup (image alt text, link comparison)."""
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(plain_text(child) for child in node.children)


class Renderer:
    """Walks a syntax tree; subclasses decide how each construct is written.

    A renderer instance is used for one document (it tracks which styles are open).
    """

    # Opening and closing markers per style; a style missing here is rendered as its content.
    markers: dict[str, tuple[str, str]] = {}
    # Headings are drawn with this style (bold in chat apps), or None when heading() does it.
    heading_style: str | None = "strong"
    table_header_style: str | None = "strong"
    bullets: Sequence[str] = ("• ",)
    block_sep = "\n\n"
    item_sep = "\n"  # between the blocks of one list item: items stay compact
    quote_prefix = "> "
    rule = "———"
    softbreak = "\n"
    hardbreak = "\n"

    def __init__(self) -> None:
        self._open_styles: set[str] = set()
        self.in_link = False
        self.depth = 0  # list nesting, 0 for a top-level list

    def render(self, markdown: str) -> str:
        """The whole document in this renderer's markup."""
        tree = parse(markdown)
        if tree is None:
            # Too deep to parse faithfully: show the source as text rather than lose any of it.
            return self.finish(self.paragraph(self.text(markdown), tight=False))
        return self.finish(self.blocks(tree.children, self.block_sep))

    def finish(self, out: str) -> str:
        return out.strip("\n").rstrip()

    # -- the walker ------------------------------------------------------------------------------
    def blocks(self, nodes: Sequence[SyntaxTreeNode], sep: str) -> str:
        parts = (self.block(node) for node in nodes)
        return sep.join(part for part in parts if part.strip())

    def block(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "paragraph":
            return self.paragraph(self.inline_of(node), tight=node.hidden)
        if kind == "heading":
            level = int(node.tag[1:]) if node.tag[1:].isdigit() else 1
            if self.heading_style is None:
                return self.heading(self.inline_of(node), level)
            with self._style(self.heading_style) as was_open:
                inner = self.inline_of(node)
            return self.heading(inner if was_open else self.wrap(self.heading_style, inner), level)
        if kind in ("fence", "code_block"):
            content = node.content.removesuffix("\n")
            if not content.strip():
                return ""
            lang = node.info.split(maxsplit=1)[0] if node.info.strip() else ""
            return self.code_block(content, re.sub(r"[^\w+#.-]", "", lang))
        if kind in ("bullet_list", "ordered_list"):
            return self._list(node)
        if kind == "blockquote":
            return self.blockquote(self.blocks(node.children, self.block_sep))
        if kind == "hr":
            return self.rule
        if kind == "table":
            return self._table(node)
        # Anything else (html_block is off, but future plugins might add kinds): keep its text.
        if node.children:
            return self.blocks(node.children, self.block_sep)
        return self.paragraph(self.text(node.content), tight=False)

    def inline_of(self, node: SyntaxTreeNode) -> str:
        return "".join(self.inline(child) for inline in node.children for child in inline.children)

    def inlines(self, nodes: Sequence[SyntaxTreeNode]) -> str:
        return "".join(self.inline(node) for node in nodes)

    def inline(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "text" or kind == "html_inline":
            return self.text(node.content)
        if kind in _STYLES:
            with self._style(kind) as was_open:
                inner = self.inlines(node.children)
            # A style nested in itself (**a **b** c**) or in a bold heading is not opened twice.
            return inner if was_open else self.wrap(kind, inner)
        if kind == "code_inline":
            return self.code_inline(node.content)
        if kind == "softbreak":
            return self.softbreak
        if kind == "hardbreak":
            return self.hardbreak
        if kind == "link":
            url = str(node.attrs.get("href", ""))
            was_in_link, self.in_link = self.in_link, True
            try:
                label = self.inlines(node.children)
            finally:
                self.in_link = was_in_link
            return self.link(label, url, plain_text(node))
        if kind == "image":
            return self.image(plain_text(node), str(node.attrs.get("src", "")))
        return self.inlines(node.children) if node.children else self.text(node.content)

    @contextmanager
    def _style(self, name: str) -> Iterator[bool]:
        was_open = name in self._open_styles
        self._open_styles.add(name)
        try:
            yield was_open
        finally:
            if not was_open:
                self._open_styles.discard(name)

    def _list(self, node: SyntaxTreeNode) -> str:
        ordered = node.type == "ordered_list"
        start = node.attrs.get("start", 1) if ordered else 1
        self.depth += 1
        try:
            items = [self.blocks(item.children, self.item_sep) for item in node.children]
        finally:
            self.depth -= 1
        return self.list_block(items, ordered, int(start))

    def _table(self, node: SyntaxTreeNode) -> str:
        header: list[str] = []
        rows: list[list[str]] = []
        for section in node.children:
            for tr in section.children:
                if section.type == "thead" and self.table_header_style:
                    style = self.table_header_style
                    with self._style(style) as was_open:
                        cells = [self.inline_of(th) for th in tr.children]
                    header = [c if was_open else self.wrap(style, c) for c in cells]
                elif section.type == "thead":
                    header = [self.inline_of(th) for th in tr.children]
                else:
                    rows.append([self.inline_of(td) for td in tr.children])
        return self.table(header, rows)

    # -- hooks: inline ---------------------------------------------------------------------------
    def text(self, text: str) -> str:
        return text

    def wrap(self, style: str, inner: str) -> str:
        opening, closing = self.markers.get(style, ("", ""))
        # Markers around nothing are noise at best and a rejected message (Telegram) at worst.
        return f"{opening}{inner}{closing}" if inner.strip() else inner

    def code_inline(self, code: str) -> str:
        return self.text(code)

    def link(self, label: str, url: str, label_text: str) -> str:
        if not label.strip() or same_target(label_text, url):
            return self.text(url.removeprefix("mailto:"))
        return f"{label} ({self.text(url)})"

    def image(self, alt: str, src: str) -> str:
        return self.link(self.text(alt), src, alt)

    # -- hooks: blocks ---------------------------------------------------------------------------
    def paragraph(self, inner: str, tight: bool) -> str:
        return inner

    def heading(self, inner: str, level: int) -> str:
        return inner

    def code_block(self, code: str, lang: str) -> str:
        return self.text(code)

    def list_block(self, items: list[str], ordered: bool, start: int) -> str:
        lines: list[str] = []
        bullet = self.bullets[self.depth % len(self.bullets)]
        for number, item in enumerate(items, start):
            marker = f"{number}. " if ordered else bullet
            # Continuation lines line up under the item text, which also indents nested lists.
            pad = " " * len(marker)
            first, *rest = item.split("\n")
            lines.append(marker + first)
            lines.extend(pad + line if line else line for line in rest)
        return "\n".join(lines)

    def blockquote(self, inner: str) -> str:
        prefix = self.quote_prefix
        return "\n".join(prefix + line if line else prefix.rstrip() for line in inner.split("\n"))

    def table(self, header: list[str], rows: list[list[str]]) -> str:
        # Chat apps have no tables: one line per row reads well on a phone.
        lines = [" | ".join(row) for row in [header, *rows] if any(cell.strip() for cell in row)]
        return "\n".join(lines)
