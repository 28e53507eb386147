"""Markdown to channel markup: concrete outputs per target, then properties over generated input."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import markdown
from gateway.markdown import (
    streaming_safe,
    to_email_text,
    to_html,
    to_plain,
    to_slack,
    to_speech,
    to_telegram_html,
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
    to_plain, to_email_text, to_slack, to_telegram_html, to_whatsapp, to_html, to_speech, streaming_safe,
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
    assert to_slack(ANSWER) == """\
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
    assert to_telegram_html(ANSWER) == """\
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
        (to_slack, "*Name* | *Age*\nAnn | *3*\nBo | 4"),
        (to_telegram_html, "<b>Name</b> | <b>Age</b>\nAnn | <b>3</b>\nBo | 4"),
        (to_speech, "Name: Ann, Age: 3. Name: Bo, Age: 4."),
    ],
)
def test_tables_become_lines(render: Callable[[str], str], expected: str) -> None:
    assert render(TABLE) == expected


def test_html_table() -> None:
    assert "<tr><td>Ann</td><td><strong>3</strong></td></tr>" in to_html(TABLE)
    assert "<thead><tr><th>Name</th><th>Age</th></tr></thead>" in to_html(TABLE)


def test_bold_inside_bold_heading_is_not_doubled() -> None:
    assert to_slack("## The **main** point") == "*The main point*"
    assert to_telegram_html("## The **main** point") == "<b>The main point</b>"
    assert to_whatsapp("**a *b* **c** d**") == "*a _b_ c d*"


def test_quotes_and_rules() -> None:
    assert to_slack("> a & b\n>\n> c\n\n---") == "> a &amp; b\n>\n> c\n\n———"
    assert to_telegram_html("> a\n\n***") == "&gt; a\n\n———"
    assert to_plain("> a\n\n___") == "> a\n\n---"
    assert to_html("> a") == "<blockquote>\n<p>a</p>\n</blockquote>"
    assert to_speech("> a\n\n---\n\nb") == "a\n\nb"


@pytest.mark.parametrize(
    ("render", "expected"),
    [
        (to_plain, "mail a@b.example or write (mailto:x@y.example)"),
        (to_slack, "mail <mailto:a@b.example> or <mailto:x@y.example|write>"),
        (to_speech, "mail a@b.example or write (x@y.example)"),
    ],
)
def test_mail_links(render: Callable[[str], str], expected: str) -> None:
    assert render("mail <a@b.example> or [write](mailto:x@y.example)") == expected


def test_relative_links_are_not_linked_on_chat_platforms() -> None:
    assert to_slack("[home](/start)") == "home (/start)"
    assert to_telegram_html("[home](/start)") == "home (/start)"
    assert to_html("[home](/start)") == "<p>home (/start)</p>"


def test_unsafe_links_stay_text() -> None:
    # markdown-it refuses javascript: links, so they arrive as text and are escaped like text.
    assert "<a" not in to_html("[x](javascript:alert(1))")
    assert to_telegram_html('[x](javascript:alert("1"))') == '[x](javascript:alert("1"))'


def test_link_details() -> None:
    # A label that only repeats the URL is not shown twice.
    assert to_plain("[example.com](https://example.com/)") == "https://example.com/"
    assert to_slack("[www.example.com](https://www.example.com)") == "<https://www.example.com>"
    assert to_plain("[Example](https://example.com)") == "Example (https://example.com)"
    assert to_slack("[a|b](https://e.example/x|y)") == "<https://e.example/x%7Cy|a|b>"
    assert to_slack("[**bold** <x>](https://e.example)") == "<https://e.example|*bold* &lt;x&gt;>"
    assert to_plain("![a cat](https://e.example/cat.png)") == "a cat (https://e.example/cat.png)"
    assert to_html("![cat](https://e.example/c.png)") == '<p><a href="https://e.example/c.png">cat</a></p>'
    # Telegram refuses code nested in a link.
    assert to_telegram_html("[`f()`](https://e.example)") == '<a href="https://e.example">f()</a>'
    assert to_telegram_html('[q](https://e.example/?q="x")') == '<a href="https://e.example/?q=%22x%22">q</a>'


def test_code_details() -> None:
    assert to_slack("``a ` b``") == "a ` b"  # mrkdwn cannot show a backtick inside code
    assert to_slack("```\nx ``` y\n```") == "```\nx `\u200b`` y\n```"
    assert to_whatsapp("`a` and ``x```y``") == "```a``` and x```y"
    assert to_telegram_html("```py<evil\nx\n```") == '<pre><code class="language-pyevil">x</code></pre>'
    assert to_telegram_html("    indented <code>\n") == "<pre>indented &lt;code&gt;</pre>"
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

    monkeypatch.setattr(markdown.to_plain.__globals__["TelegramRenderer"], "text", broken)
    with caplog.at_level(logging.ERROR, logger="gateway.markup"):
        assert to_telegram_html("**a** < b") == "**a** &lt; b"
    assert "TelegramRenderer failed" in caplog.text


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


# -- properties ------------------------------------------------------------------------------------
MARKDOWN_PIECES = [*"ab1 \n\t*_~`#>-+.|[]()<>&\"'!\\:/", "```", "**", "~~", "\n\n", "1. ", "- ", "http://x.y"]
MARKDOWNISH = st.lists(st.sampled_from(MARKDOWN_PIECES), max_size=60).map("".join)
ANY_TEXT = st.one_of(st.text(), MARKDOWNISH)

word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=7)
words = st.lists(word, min_size=1, max_size=4).map(" ".join)
url = word.map(lambda w: f"https://{w}.example/{w}")
inline_item = st.one_of(
    words,
    words.map(lambda w: f"**{w}**"),
    words.map(lambda w: f"*{w}*"),
    words.map(lambda w: f"_{w}_"),
    words.map(lambda w: f"~~{w}~~"),
    words.map(lambda w: f"`{w}`"),
    st.tuples(words, url).map(lambda p: f"[{p[0]}]({p[1]})"),
    url.map(lambda u: f"<{u}>"),
)
inline = st.lists(inline_item, min_size=1, max_size=5).map(" ".join)
block = st.one_of(
    inline,
    st.tuples(st.integers(1, 6), inline).map(lambda p: "#" * p[0] + " " + p[1]),
    st.lists(inline, min_size=1, max_size=3).map(lambda xs: "\n".join(f"- {x}" for x in xs)),
    st.lists(inline, min_size=1, max_size=3).map(lambda xs: "\n".join(f"{i}. {x}" for i, x in enumerate(xs, 1))),
    st.lists(words, min_size=1, max_size=3).map(lambda xs: "```python\n" + "\n".join(xs) + "\n```"),
    inline.map(lambda x: f"> {x}"),
    st.lists(st.tuples(inline, inline), min_size=1, max_size=3).map(
        lambda rows: "| h | k |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    ),
)
DOCUMENT = st.lists(block, min_size=1, max_size=5).map("\n\n".join)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TELEGRAM_TAG = re.compile(r'<(?:/?(?:b|i|s|pre|code)|code class="[^"<>]*"|a href="[^"<>]*"|/a)>')
ENTITY = re.compile(r"&(?:amp|lt|gt|quot|#x27);")


class TagChecker(HTMLParser):
    """Records every markup problem: unknown tags or attributes, bad nesting, unbalanced tags."""

    def __init__(self, allowed: dict[str, set[str]], opaque: set[str]) -> None:
        super().__init__(convert_charrefs=False)
        self.allowed, self.opaque = allowed, opaque
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.allowed or any(name not in self.allowed[tag] for name, _ in attrs):
            self.problems.append(f"tag {tag} {attrs}")
        parent = self.stack[-1] if self.stack else None
        if parent in self.opaque and not (parent == "pre" and tag == "code"):
            self.problems.append(f"{tag} inside {parent}")
        if tag == "a" and "a" in self.stack:
            self.problems.append("link in link")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"unbalanced </{tag}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.problems.append(f"self-closing {tag}")

    def handle_entityref(self, name: str) -> None:
        if name not in {"amp", "lt", "gt", "quot"}:
            self.problems.append(f"entity {name}")

    def unknown_decl(self, data: str) -> None:
        self.problems.append(f"declaration {data}")

    def handle_comment(self, data: str) -> None:
        self.problems.append(f"comment {data}")


def markup_problems(out: str, allowed: dict[str, set[str]], opaque: set[str]) -> list[str]:
    checker = TagChecker(allowed, opaque)
    checker.feed(out)
    checker.close()
    problems = checker.problems + [f"unclosed {tag}" for tag in checker.stack]
    return problems


TELEGRAM_ALLOWED = {"b": set(), "i": set(), "s": set(), "code": {"class"}, "pre": set(), "a": {"href"}}


def assert_telegram_ok(out: str) -> None:
    assert markup_problems(out, TELEGRAM_ALLOWED, {"code", "pre"}) == []
    # html.parser forgives a stray "<"; Telegram does not. Outside our tags there is none, and
    # every "&" starts an entity.
    text = TELEGRAM_TAG.sub("", out)
    assert "<" not in text and ">" not in text, out
    assert "&" not in ENTITY.sub("", text), out


SLACK_LINK = re.compile(r"<[^<>|\s]+(?:\|[^<>]*)?>")
SLACK_QUOTE = re.compile(r"^(?:[ ]*(?:(?:[•◦▪]|\d+\.) )*>[ ]?)+", re.M)  # quote marks, maybe in lists


def assert_slack_ok(out: str) -> None:
    text = SLACK_LINK.sub("", out)
    assert "<" not in text, out
    assert ">" not in SLACK_QUOTE.sub("", text), out  # only our own quote marks
    assert "&" not in re.sub(r"&(?:amp|lt|gt);", "", out), out


@FAST
@given(ANY_TEXT)
def test_nothing_raises(source: str) -> None:
    for render in RENDERERS:
        assert isinstance(render(source), str)
    for render in RENDERERS[:-1]:
        assert isinstance(render(streaming_safe(source)), str)


@FAST
@given(st.one_of(ANY_TEXT, DOCUMENT))
def test_telegram_is_always_well_formed(source: str) -> None:
    assert_telegram_ok(to_telegram_html(source))
    assert_telegram_ok(to_telegram_html(streaming_safe(source)))


@FAST
@given(st.one_of(ANY_TEXT, DOCUMENT))
def test_slack_has_no_stray_control_characters(source: str) -> None:
    assert_slack_ok(to_slack(source))


@FAST
@given(st.one_of(ANY_TEXT, DOCUMENT))
def test_email_html_is_a_safe_fragment(source: str) -> None:
    plain_tags = ["p", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "pre", "ul", "li"]
    plain_tags += ["blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td"]
    allowed: dict[str, set[str]] = {tag: set() for tag in plain_tags}
    allowed |= {"a": {"href"}, "ol": {"start"}, "code": {"class"}}
    out = to_html(source)
    void = re.compile(r"<(?:hr|br)>")  # void elements never close; check the rest for balance
    assert markup_problems(void.sub("", out), allowed, {"code"}) == []


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.replace("python", ""))


@FAST
@given(DOCUMENT)
def test_plain_keeps_every_word_and_no_markup(source: str) -> None:
    out = to_plain(source)
    assert words_of(out) == words_of(source)
    for syntax in ("**", "~~", "`", "](", "#", "|---"):
        assert syntax not in out


@FAST
@given(DOCUMENT)
def test_speech_has_no_markup_or_urls(source: str) -> None:
    out = to_speech(source)
    for syntax in ("**", "~~", "`", "](", "#", "://", ".example/", "<", ">"):
        assert syntax not in out


@FAST
@given(DOCUMENT)
def test_streaming_keeps_finished_answers_as_they_are(source: str) -> None:
    assert to_plain(streaming_safe(source)) == to_plain(source)


@FAST
@given(DOCUMENT, st.data())
def test_streaming_prefixes_show_no_syntax(source: str, data: st.DataObject) -> None:
    prefix = source[: data.draw(st.integers(0, len(source)))]
    out = to_plain(streaming_safe(prefix))
    for syntax in ("**", "~~", "`", "](", "```"):
        assert syntax not in out, (prefix, out)
    assert_telegram_ok(to_telegram_html(streaming_safe(prefix)))
