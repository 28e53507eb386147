"""A safe HTML fragment for email bodies: every character of the answer is escaped and the only
tags are the ones generated here (raw HTML in the answer was already parsed as text).
"""

from __future__ import annotations

import html

from gateway.markup.walker import Renderer, is_absolute, same_target


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


class HtmlRenderer(Renderer):
    markers = {"strong": ("<strong>", "</strong>"), "em": ("<em>", "</em>"), "s": ("<s>", "</s>")}
    heading_style = None  # <h1>… carries the emphasis itself
    table_header_style = None  # so does <th>
    block_sep = "\n"
    item_sep = "\n"
    rule = "<hr>"
    hardbreak = "<br>\n"

    def text(self, text: str) -> str:
        return _esc(text)

    def code_inline(self, code: str) -> str:
        return f"<code>{_esc(code)}</code>" if code.strip() else _esc(code)

    def code_block(self, code: str, lang: str) -> str:
        attr = f' class="language-{_esc(lang)}"' if lang else ""
        return f"<pre><code{attr}>{_esc(code)}</code></pre>"

    def link(self, label: str, url: str, label_text: str) -> str:
        # A relative link means nothing in a mail client; show it as text like the plain part does.
        if not is_absolute(url):
            return super().link(label, url, label_text)
        if not label.strip() or same_target(label_text, url):
            label = _esc(url.removeprefix("mailto:"))
        return f'<a href="{_esc(url)}">{label}</a>'

    def image(self, alt: str, src: str) -> str:
        # Remote images in mail are tracking pixels to most clients; link to the image instead.
        return self.link(_esc(alt), src, alt)

    def paragraph(self, inner: str, tight: bool) -> str:
        return inner if tight else f"<p>{inner}</p>"

    def heading(self, inner: str, level: int) -> str:
        return f"<h{level}>{inner}</h{level}>"

    def list_block(self, items: list[str], ordered: bool, start: int) -> str:
        tag = "ol" if ordered else "ul"
        attr = f' start="{start}"' if ordered and start != 1 else ""
        body = "".join(f"<li>{item}</li>\n" for item in items)
        return f"<{tag}{attr}>\n{body}</{tag}>"

    def blockquote(self, inner: str) -> str:
        return f"<blockquote>\n{inner}\n</blockquote>"

    def table(self, header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{cell}</th>" for cell in header)
        body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>\n" for row in rows)
        return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"
