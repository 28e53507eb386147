"""Markdown to channel markup: concrete outputs per target and the details of each construct."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from gateway import markdown
from gateway.markdown import (
    streaming_safe,
    to_chat_html,
    to_email_text,
    to_html,
    to_mrkdwn,
    to_plain,
    to_speech,
    to_whatsapp,
)
from gateway.markup.speech import place
from gateway.markup.walker import MAX_NESTING

# When a property fails, Hypothesis writes a patch file with libcst, which imports a deprecated
# mypy_extensions API; with warnings as errors that turned the failure into an INTERNALERROR.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

ANSWER = """\
# Getting started

Use **bold**, *italic*, ~~old~~ and `pip install x`. Note 1 < 2 & 3 > 2, <b>raw</b>.

```python
if a < b:
    print("&")
```

See [the docs](https://example.com/docs?a=1&b=2) or <https://example.com>.

- first
- second
  1. nested one
  2. nested two

3. alpha
4. beta
"""

RENDERERS: list[Callable[[str], str]] = [
    to_plain, to_email_text, to_mrkdwn, to_chat_html, to_whatsapp, to_html, to_speech, streaming_safe,
]


# -- the representative answer, per target ---------------------------------------------------------
def test_plain() -> None:
    assert to_plain(ANSWER) == """\
Getting started

Use bold, italic, old and pip install x. Note 1 < 2 & 3 > 2, <b>raw</b>.

if a < b:
    print("&")

See the docs (https://example.com/docs?a=1&b=2) or https://example.com.

- first
- second
  1. nested one
  2. nested two

3. alpha
4. beta"""
    assert to_email_text(ANSWER) == to_plain(ANSWER)


def test_slack() -> None:
    assert to_mrkdwn(ANSWER) == """\
*Getting started*

Use *bold*, _italic_, ~old~ and `pip install x`. Note 1 &lt; 2 &amp; 3 &gt; 2, &lt;b&gt;raw&lt;/b&gt;.

```
if a &lt; b:
    print("&amp;")
```

See <https://example.com/docs?a=1&amp;b=2|the docs> or <https://example.com>.

• first
• second
  1. nested one
  2. nested two

3. alpha
4. beta"""


def test_telegram_html() -> None:
    assert to_chat_html(ANSWER) == """\
<b>Getting started</b>

Use <b>bold</b>, <i>italic</i>, <s>old</s> and <code>pip install x</code>. \
Note 1 &lt; 2 &amp; 3 &gt; 2, &lt;b&gt;raw&lt;/b&gt;.

<pre><code class="language-python">if a &lt; b:
    print("&amp;")</code></pre>

See <a href="https://example.com/docs?a=1&amp;b=2">the docs</a> or \
<a href="https://example.com">https://example.com</a>.

• first
• second
  1. nested one
  2. nested two

3. alpha
4. beta"""


def test_whatsapp() -> None:
    assert to_whatsapp(ANSWER) == """\
*Getting started*

Use *bold*, _italic_, ~old~ and ```pip install x```. Note 1 < 2 & 3 > 2, <b>raw</b>.

```
if a < b:
    print("&")
```

See the docs (https://example.com/docs?a=1&b=2) or https://example.com.

• first
• second
  1. nested one
  2. nested two

3. alpha
4. beta"""


def test_html() -> None:
    assert to_html(ANSWER) == """\
<h1>Getting started</h1>
<p>Use <strong>bold</strong>, <em>italic</em>, <s>old</s> and <code>pip install x</code>. \
Note 1 &lt; 2 &amp; 3 &gt; 2, &lt;b&gt;raw&lt;/b&gt;.</p>
<pre><code class="language-python">if a &lt; b:
    print(&quot;&amp;&quot;)</code></pre>
<p>See <a href="https://example.com/docs?a=1&amp;b=2">the docs</a> or \
<a href="https://example.com">https://example.com</a>.</p>
<ul>
<li>first</li>
<li>second
<ol>
<li>nested one</li>
<li>nested two</li>
</ol></li>
</ul>
<ol start="3">
<li>alpha</li>
<li>beta</li>
</ol>"""


def test_speech() -> None:
    assert to_speech(ANSWER) == """\
Getting started.

Use bold, italic, old and pip install x. Note 1 < 2 & 3 > 2, raw.

(code omitted)

See the docs (a link to example.com) or a link to example.com.

first. second. nested one. nested two.

alpha. beta."""


# -- details ---------------------------------------------------------------------------------------
TABLE = "| Name | Age |\n|---|--:|\n| Ann | **3** |\n| Bo | 4 |"


@pytest.mark.parametrize(
    ("render", "expected"),
    [
        (to_plain, "Name | Age\nAnn | 3\nBo | 4"),
        (to_mrkdwn, "*Name* | *Age*\nAnn | *3*\nBo | 4"),
        (to_chat_html, "<b>Name</b> | <b>Age</b>\nAnn | <b>3</b>\nBo | 4"),
        (to_speech, "Name: Ann, Age: 3. Name: Bo, Age: 4."),
    ],
)
def test_tables_become_lines(render: Callable[[str], str], expected: str) -> None:
    assert render(TABLE) == expected


def test_html_table() -> None:
    assert "<tr><td>Ann</td><td><strong>3</strong></td></tr>" in to_html(TABLE)
    assert "<thead><tr><th>Name</th><th>Age</th></tr></thead>" in to_html(TABLE)


def test_bold_inside_bold_heading_is_not_doubled() -> None:
    assert to_mrkdwn("## The **main** point") == "*The main point*"
    assert to_chat_html("## The **main** point") == "<b>The main point</b>"
    assert to_whatsapp("**a *b* **c** d**") == "*a _b_ c d*"


def test_quotes_and_rules() -> None:
    assert to_mrkdwn("> a & b\n>\n> c\n\n---") == "> a &amp; b\n>\n> c\n\n———"
    assert to_chat_html("> a\n\n***") == "&gt; a\n\n———"
    assert to_plain("> a\n\n___") == "> a\n\n---"
    assert to_html("> a") == "<blockquote>\n<p>a</p>\n</blockquote>"
    assert to_speech("> a\n\n---\n\nb") == "a\n\nb"


@pytest.mark.parametrize(
    ("render", "expected"),
    [
        (to_plain, "mail a@b.example or write (mailto:x@y.example)"),
        (to_mrkdwn, "mail <mailto:a@b.example> or <mailto:x@y.example|write>"),
        (to_speech, "mail a@b.example or write (x@y.example)"),
    ],
)
def test_mail_links(render: Callable[[str], str], expected: str) -> None:
    assert render("mail <a@b.example> or [write](mailto:x@y.example)") == expected


def test_relative_links_are_not_linked_on_chat_platforms() -> None:
    assert to_mrkdwn("[home](/start)") == "home (/start)"
    assert to_chat_html("[home](/start)") == "home (/start)"
    assert to_html("[home](/start)") == "<p>home (/start)</p>"


def test_unsafe_links_stay_text() -> None:
    # markdown-it refuses javascript: links, so they arrive as text and are escaped like text.
    assert "<a" not in to_html("[x](javascript:alert(1))")
    assert to_chat_html('[x](javascript:alert("1"))') == '[x](javascript:alert("1"))'


def test_link_details() -> None:
    # A label that only repeats the URL is not shown twice.
    assert to_plain("[example.com](https://example.com/)") == "https://example.com/"
    assert to_mrkdwn("[www.example.com](https://www.example.com)") == "<https://www.example.com>"
    assert to_plain("[Example](https://example.com)") == "Example (https://example.com)"
    assert to_mrkdwn("[a|b](https://e.example/x|y)") == "<https://e.example/x%7Cy|a|b>"
    assert to_mrkdwn("[**bold** <x>](https://e.example)") == "<https://e.example|*bold* &lt;x&gt;>"
    assert to_plain("![a cat](https://e.example/cat.png)") == "a cat (https://e.example/cat.png)"
    assert to_html("![cat](https://e.example/c.png)") == '<p><a href="https://e.example/c.png">cat</a></p>'
    # Telegram refuses code nested in a link.
    assert to_chat_html("[`f()`](https://e.example)") == '<a href="https://e.example">f()</a>'
    assert to_chat_html('[q](https://e.example/?q="x")') == '<a href="https://e.example/?q=%22x%22">q</a>'


def test_code_details() -> None:
    assert to_mrkdwn("``a ` b``") == "a ` b"  # mrkdwn cannot show a backtick inside code
    assert to_mrkdwn("```\nx ``` y\n```") == "```\nx `\u200b`` y\n```"
    assert to_whatsapp("`a` and ``x```y``") == "```a``` and x```y"
    assert to_chat_html("```py<evil\nx\n```") == '<pre><code class="language-pyevil">x</code></pre>'
    assert to_chat_html("    indented <code>\n") == "<pre>indented &lt;code&gt;</pre>"
    assert to_plain("```\n\n```\n\nafter") == "after"  # an empty code block is dropped


def test_speech_details() -> None:
    assert to_speech("Go to https://www.example.com/a?b=1. Or www.test.example, then stop") == (
        "Go to a link to example.com. Or a link to test.example, then stop"
    )
    assert to_speech("## Steps\n\n1. Open it\n2. Close it!") == "Steps.\n\nOpen it. Close it!"
    assert to_speech("2 * 3 = 6 and a**b") == "2 * 3 = 6 and ab"
    assert to_speech("[x](http://[bad) ok") == "x (a link) ok"
    assert place("http://[::1") == "a link"  # urlsplit raises on a broken IPv6 literal


def test_breaks() -> None:
    assert to_plain("a\nb  \nc") == "a\nb\nc"
    assert to_html("a\nb  \nc") == "<p>a\nb<br>\nc</p>"
    assert to_speech("a\nb  \nc") == "a b c"


def test_deep_nesting_loses_nothing() -> None:
    deep = ">" * (MAX_NESTING + 10) + " the end"
    for render in RENDERERS:
        assert "end" in render(deep)
    assert to_plain("- " * 30 + "leaf").endswith("leaf")


def test_a_renderer_bug_falls_back_to_escaped_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: object, text: str) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(markdown.to_plain.__globals__["ChatHtmlRenderer"], "text", broken)
    with caplog.at_level(logging.ERROR, logger="gateway.markup"):
        assert to_chat_html("**a** < b") == "**a** &lt; b"
    assert "ChatHtmlRenderer failed" in caplog.text


# -- streaming -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("partial", "expected"),
    [
        ("Hello **wor", "Hello **wor**"),
        ("Hello **", "Hello"),
        ("Hello **bold*", "Hello **bold**"),
        ("x `code", "x `code`"),
        ("x `", "x"),
        ("a\n\n```py\nprint(1)", "a\n\n```py\nprint(1)\n```"),
        ("```py\nx\n", "```py\nx\n```"),
        ("````\n```\nx", "````\n```\nx\n````"),
        ("```\nx\n``", "```\nx\n```"),
        ("see [docs](https://exa", "see docs"),
        ("see [do", "see do"),
        ("~~str", "~~str~~"),
        ("~~strike~", "~~strike~~"),
        ("snake_", "snake"),
        ("an _it", "an _it_"),
        ("2 * 3", "2 * 3"),
        ("**a**\n- item **b", "**a**\n- item **b**"),
        ("**bold `code", "**bold `code`**"),
        ("**_", ""),
        ("\\*not", "\\*not"),
        ("done **well**", "done **well**"),
        ("```\nx\n```\n\nmore *y", "```\nx\n```\n\nmore *y*"),
    ],
)
def test_streaming_safe(partial: str, expected: str) -> None:
    assert streaming_safe(partial) == expected
