"""split_text: parts fit the limit, prefer paragraph > sentence > word cuts, and lose nothing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.text import split_text

# When a property fails, Hypothesis writes a patch file with libcst, which imports a deprecated
# mypy_extensions API; with warnings as errors that turned the failure into an INTERNALERROR.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

NUMBER = re.compile(r"^\((\d+)/(\d+)\) ")


def unnumbered(parts: list[str]) -> list[str]:
    """The parts without their (i/n) prefixes, after checking the prefixes count 1..n."""
    n = len(parts)
    for i, part in enumerate(parts, 1):
        match = NUMBER.match(part)
        assert match and (int(match[1]), int(match[2])) == (i, n), part
    return [NUMBER.sub("", part) for part in parts]


def letters(text: str) -> str:
    return re.sub(r"\s", "", text)


def test_short_and_empty() -> None:
    assert split_text("  hello  ", 10) == ["hello"]
    assert split_text("hello", 5, numbered=True) == ["hello"]  # one part needs no number
    assert split_text(" \n ", 10) == []


def test_prefers_a_paragraph_break_to_a_later_sentence_end() -> None:
    text = "First paragraph, one sentence.\n\nSecond one. It goes on. And on and on."
    assert split_text(text, 50) == ["First paragraph, one sentence.", "Second one. It goes on. And on and on."]


def test_prefers_a_sentence_end_to_a_later_space() -> None:
    text = "One sentence here. Then a second sentence that is long."
    assert split_text(text, 40) == ["One sentence here.", "Then a second sentence that is long."]


def test_falls_back_to_spaces() -> None:
    assert split_text("alpha beta gamma delta epsilon", 12) == ["alpha beta", "gamma delta", "epsilon"]


def test_an_early_boundary_is_not_worth_a_tiny_part() -> None:
    # The paragraph break is in the first third: cutting there would leave a 2-character part.
    text = "Hi\n\nthis is a sentence with many words that keeps going"
    parts = split_text(text, 30)
    assert parts[0] != "Hi" and all(len(p) <= 30 for p in parts)


def test_a_word_longer_than_the_limit_is_cut() -> None:
    word = "x" * 25
    assert split_text(f"ab {word} cd", 10) == ["ab", "x" * 10, "x" * 10, "xxxxx cd"]
    assert "".join(split_text(word, 7)) == word


def test_other_whitespace_is_a_word_boundary() -> None:
    # Tabs and no-break spaces used to be ignored, cutting a word in two next to one of them.
    assert split_text("aaaa\tbbbb", 6) == ["aaaa", "bbbb"]
    assert split_text("aaaa\xa0bbbb", 6) == ["aaaa", "bbbb"]


def test_sentences_inside_quotes_and_cjk() -> None:
    assert split_text('He said "stop." Then he left the room.', 24) == ['He said "stop."', "Then he left the room."]
    assert split_text("这是第一句。这是第二句。", 8) == ["这是第一句。", "这是第二句。"]


def test_numbering_counts_in_the_limit() -> None:
    parts = split_text("word " * 30, 20, numbered=True)
    assert len(parts) >= 10  # two-digit numbers make the prefix wider
    assert all(len(p) <= 20 for p in parts)
    assert " ".join(unnumbered(parts)).split() == ["word"] * 30


def test_a_limit_too_small_for_numbering_is_an_error() -> None:
    with pytest.raises(ValueError, match="numbering"):
        split_text("one two three four", 6, numbered=True)
    with pytest.raises(ValueError):
        split_text("one two", 0)


def long_answer(size: int) -> str:
    sentences = [f"Sentence number {i} says something useful about topic {i % 7}." for i in range(size)]
    paragraphs = [" ".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6)]
    text = "\n\n".join(paragraphs)
    return text[: text.rfind(".", 0, size) + 1]


@pytest.mark.parametrize("size", [5_000, 9_000])
@pytest.mark.parametrize(("limit", "numbered"), [(160, True), (1_600, False), (1_600, True), (4_000, False)])
def test_long_answers(size: int, limit: int, numbered: bool) -> None:
    text = long_answer(size)
    assert len(text) > size - 100
    parts = split_text(text, limit, numbered=numbered)
    assert all(len(p) <= limit for p in parts)
    bodies = unnumbered(parts) if numbered else parts
    assert " ".join(bodies).split() == text.split()
    # Every cut falls at a sentence end at least: no part ends mid-sentence.
    assert all(body.endswith(".") for body in bodies)
    if limit >= 1_600:
        assert all("\n\n" not in body[-5:] for body in bodies)
        assert len(parts) <= len(text) // (limit // 2) + 1  # the floor keeps parts reasonably full


WORD = st.text(alphabet="abcxyz.!?,é中", min_size=1, max_size=12)
SPACE = st.sampled_from([" ", " ", " ", "\n", "\n\n", "\t", "\xa0", "  ", " \n \n"])
TEXT = st.lists(st.tuples(WORD, SPACE), max_size=60).map(lambda ws: "".join(w + s for w, s in ws))


@settings(max_examples=200, deadline=None)
@given(TEXT, st.integers(1, 120))
def test_nothing_lost_or_reordered(text: str, limit: int) -> None:
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert all(p == p.strip() for p in parts)
    assert letters("".join(parts)) == letters(text)
    if all(len(word) <= limit for word in text.split()):
        assert " ".join(parts).split() == text.split()


@settings(max_examples=200, deadline=None)
@given(TEXT, st.integers(24, 120))
def test_numbered_parts_fit_and_lose_nothing(text: str, limit: int) -> None:
    parts = split_text(text, limit, numbered=True)
    assert all(len(p) <= limit for p in parts)
    bodies = unnumbered(parts) if len(parts) > 1 else parts
    assert letters("".join(bodies)) == letters(text)
    if all(len(word) <= limit - 8 for word in text.split()):
        assert " ".join(bodies).split() == text.split()
