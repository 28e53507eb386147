"""Chat targets: plain text (SMS, Messenger, Instagram, email text part), Slack mrkdwn, Telegram
HTML and WhatsApp styles. Each one only names its markers, escaping and link form; the layout of
blocks comes from :class:`~gateway.markup.walker.Renderer`.
"""

from __future__ import annotations

import html

from gateway.markup.walker import Renderer, is_absolute, same_target

# A fence inside a code block would end the block early; a zero-width space keeps it literal.
_FENCE = "```"
_DEFUSED_FENCE = "`\u200b``"


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters, escaped everywhere including code (Slack's own rule), so
    text from a user cannot mention or link anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chat_html_escape(text: str) -> str:
    return html.escape(text, quote=False)


class PlainRenderer(Renderer):
    """No markup at all; the bullets, rule and quote marks stay in the GSM-7 alphabet for SMS."""

    bullets = ("- ",)
    rule = "---"


class MrkdwnRenderer(Renderer):
    markers = {"strong": ("*", "*"), "em": ("_", "_"), "s": ("~", "~")}
    bullets = ("• ", "◦ ", "▪ ")

    def text(self, text: str) -> str:
        return mrkdwn_escape(text)

    def code_inline(self, code: str) -> str:
        # mrkdwn has no way to put a backtick inside inline code: show it as text instead.
        if "`" in code or not code.strip():
            return self.text(code)
        return f"`{self.text(code)}`"

    def code_block(self, code: str, lang: str) -> str:
        # Slack shows no language, so it is dropped.
        return f"{_FENCE}\n{self.text(code.replace(_FENCE, _DEFUSED_FENCE))}\n{_FENCE}"

    def link(self, label: str, url: str, label_text: str) -> str:
        if not is_absolute(url):
            return super().link(label, url, label_text)
        # `|` would end the URL part early; the rest is escaped like text, as Slack itself sends it.
        target = mrkdwn_escape(url).replace("|", "%7C")
        if not label.strip() or same_target(label_text, url):
            return f"<{target}>"
        return f"<{target}|{label.replace(chr(10), ' ')}>"


class ChatHtmlRenderer(Renderer):
    """Telegram's HTML parse mode: only b, i, s, code, pre and a, always well-formed."""

    markers = {"strong": ("<b>", "</b>"), "em": ("<i>", "</i>"), "s": ("<s>", "</s>")}
    bullets = ("• ", "◦ ", "▪ ")
    # Telegram's <blockquote> is outside the tag set we promise channels; quote with a text mark.
    quote_prefix = "&gt; "

    def text(self, text: str) -> str:
        return chat_html_escape(text)

    def code_inline(self, code: str) -> str:
        # Telegram rejects entities nested in a link or code, so code inside a link is plain text.
        if self.in_link or not code.strip():
            return self.text(code)
        return f"<code>{self.text(code)}</code>"

    def code_block(self, code: str, lang: str) -> str:
        if lang:
            return f'<pre><code class="language-{html.escape(lang)}">{self.text(code)}</code></pre>'
        return f"<pre>{self.text(code)}</pre>"

    def link(self, label: str, url: str, label_text: str) -> str:
        if not is_absolute(url):
            return super().link(label, url, label_text)
        if not label.strip():
            label = self.text(url)
        return f'<a href="{html.escape(url, quote=True)}">{label}</a>'


class WhatsAppRenderer(Renderer):
    """WhatsApp styles; no link markup exists, and nothing can be escaped."""

    markers = {"strong": ("*", "*"), "em": ("_", "_"), "s": ("~", "~")}
    bullets = ("• ", "◦ ", "▪ ")

    def code_inline(self, code: str) -> str:
        if _FENCE in code or "\n" in code or not code.strip():
            return code
        return f"{_FENCE}{code}{_FENCE}"

    def code_block(self, code: str, lang: str) -> str:
        return f"{_FENCE}\n{code.replace(_FENCE, _DEFUSED_FENCE)}\n{_FENCE}"
