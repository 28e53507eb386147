"""Markdown to channel markup: properties over generated input (never raises, always well-formed)."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

# When a property fails, Hypothesis writes a patch file with libcst, which imports a deprecated
# mypy_extensions API; with warnings as errors that turned the failure into an INTERNALERROR.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

RENDERERS: list[Callable[[str], str]] = [
    to_plain, to_email_text, to_mrkdwn, to_chat_html, to_whatsapp, to_html, to_speech, streaming_safe,
]



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
    assert_telegram_ok(to_chat_html(source))
    assert_telegram_ok(to_chat_html(streaming_safe(source)))


@FAST
@given(st.one_of(ANY_TEXT, DOCUMENT))
def test_slack_has_no_stray_control_characters(source: str) -> None:
    assert_slack_ok(to_mrkdwn(source))


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
    assert_telegram_ok(to_chat_html(streaming_safe(prefix)))
