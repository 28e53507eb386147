"""Make a partial answer (text still arriving) render sensibly now.

Slack and Telegram show the answer growing by editing one message. A prefix of good Markdown is
often bad Markdown: an open code fence swallows nothing yet but flips later, ``**bol`` shows its
asterisks, ``[docs](https://exa`` shows the syntax. The fixes are heuristics on the text's last
block only: the final answer is rendered from the complete text, so a wrong guess here lasts one
edit at most.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

# A fence line, possibly inside list items or block quotes.
_FENCE = re.compile(r"^[ \t>]*(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)?[ \t>]*(`{3,}|~{3,})(.*)$")
# Lines that start a new block, so emphasis before them cannot continue into them.
_BLOCK_START = re.compile(r"^ {0,3}(?:#{1,6}(?:\s|$)|>|[-*+](?:\s|$)|\d{1,9}[.)](?:\s|$)|\|)")
_PARTIAL_LINK = re.compile(r"!?\[([^\[\]\n]*)\]\([^()\s]*$")
_OPEN_LABEL = re.compile(r"!?\[([^\[\]\n]*)$")
_PUNCT = frozenset(string.punctuation)
_MARKS = "*_~`"


@dataclass
class _Run:
    char: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def streaming_safe(markdown: str) -> str:
    """Markdown for the part of an answer received so far, with dangling syntax closed or dropped.

    An open code fence is closed; at the end of the last block an unmatched ``**``/``_``/``~~``
    or backtick marker with nothing after it is dropped, one with text after it is closed, and a
    link whose URL is still arriving shows only its label.
    """
    lines = markdown.split("\n")
    fence = ""
    tail_start = 0
    for index, line in enumerate(lines):
        match = _FENCE.match(line)
        if fence:
            closes = match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)
            if closes and match and not match.group(2).strip():
                fence, tail_start = "", index + 1
        elif match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
            fence = match.group(1)
        elif not line.strip():
            tail_start = index + 1
        elif _BLOCK_START.match(line):
            tail_start = index
    if fence:
        if lines[-1].strip() and not lines[-1].strip(fence[0] + " \t"):
            # The closing fence is arriving ("`" of "```"): it is not code, drop it.
            markdown = markdown[: len(markdown) - len(lines[-1])]
        return markdown + ("" if markdown.endswith("\n") else "\n") + fence
    head = "\n".join(lines[:tail_start])
    tail = _close_inline("\n".join(lines[tail_start:]))
    return f"{head}\n{tail}" if tail_start else tail


def _close_inline(text: str) -> str:
    text = text.rstrip()
    text = _PARTIAL_LINK.sub(r"\1", text)
    text = _OPEN_LABEL.sub(r"\1", text)
    runs = _marker_runs(text)
    stack: list[_Run] = []
    code: _Run | None = None
    last_closed: tuple[_Run, _Run] | None = None  # (opener, closer) of the run that ends the text
    for run in runs:
        if code is not None:
            if run.char == "`" and run.size == code.size:
                code = None
                last_closed = (run, run)
            continue
        if run.char == "`":
            code = run
            continue
        if run.char == "~" and run.size < 2:
            continue  # a single tilde is text, not strikethrough
        can_open, can_close = _flanking(text, run)
        opener = next((o for o in reversed(stack) if o.char == run.char), None) if can_close else None
        if opener is not None:
            del stack[stack.index(opener) :]
            last_closed = (opener, run)
        elif can_open:
            stack.append(run)
    suffix = ""
    if code is not None:
        if code.end == len(text):
            text = text[: code.start]
        else:
            suffix = code.char * code.size
    elif runs and runs[-1].end == len(text):
        last = runs[-1]
        if last_closed is not None and last_closed[1] is last:
            if last.size < last_closed[0].size:  # "**bold*": the closer is still arriving
                text = text[: last.start] + last.char * last_closed[0].size
        else:
            text = text[: last.start]  # a dangling marker with nothing after it yet
    text = text.rstrip()
    while stack and stack[-1].end >= len(text):
        text = text[: stack.pop().start].rstrip()  # an opener with nothing after it is dangling too
    return text + suffix + "".join(run.char * run.size for run in reversed(stack))


def _marker_runs(text: str) -> list[_Run]:
    runs: list[_Run] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # an escaped marker is text
            continue
        if char in _MARKS:
            end = i
            while end < len(text) and text[end] == char:
                end += 1
            runs.append(_Run(char, i, end))
            i = end
            continue
        i += 1
    return runs


def _flanking(text: str, run: _Run) -> tuple[bool, bool]:
    """CommonMark's can-open / can-close rules for a delimiter run (ASCII punctuation only)."""
    before = text[run.start - 1] if run.start > 0 else " "
    after = text[run.end] if run.end < len(text) else " "
    left = not after.isspace() and (after not in _PUNCT or before.isspace() or before in _PUNCT)
    right = not before.isspace() and (before not in _PUNCT or after.isspace() or after in _PUNCT)
    if run.char == "_":
        return left and (not right or before in _PUNCT), right and (not left or after in _PUNCT)
    return left, right
