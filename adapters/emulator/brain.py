r"""The emulator's deterministic "agent": what it answers to a message. Tests rely on these rules.

Rules are tried in the table's order; the first match answers (N / NAME: the captured groups).
Answers with a tool call finish with "tool-calls", the others with "stop".

| rule | user message                                | answer                      | continued after         |
|      |                                             |                             | the tool result         |
|------|---------------------------------------------|-----------------------------|-------------------------|
| b    | ``^call tool ([A-Za-z0-9_]+)\s*(\{.*\})?$`` | no text; tool call NAME,    | ``Tool NAME returned:   |
|      | (optional JSON object; must parse)          | input: the object or ``{}`` | <output>``              |
| a    | ``order\s*#?(\d+)`` anywhere, any case      | ``Let me check order N.``   | ``Here is what I found  |
|      |                                             | then tool call lookupOrder  | for order N: <output>`` |
|      |                                             | ``{"orderId": "N"}``        |                         |
| c    | ``long (\d+)`` anywhere (case-sensitive)    | at least N chars (capped at | —                       |
|      |                                             | 100 000) of ``This is       |                         |
|      |                                             | sentence K of the long      |                         |
|      |                                             | answer.``; a blank line     |                         |
|      |                                             | after every 5th sentence    |                         |
| d    | the word ``markdown``, any case             | :data:`MARKDOWN_SAMPLE`     | —                       |
| e    | anything else                               | ``You said: "<message>".    | —                       |
|      |                                             | This is message <n> of      |                         |
|      |                                             | this conversation.``        |                         |
|      |                                             | (n: user messages so far,   |                         |
|      |                                             | this one included)          |                         |

``<output>`` is ``json.dumps(output, sort_keys=True)`` of the submitted tool result. Rule b is tried
before rule a because it is an explicit, anchored command (``call tool lookupOrder {"orderId":
"7"}`` must stay a rule-b call). Answers are streamed as word-sized deltas (:func:`words`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

ORDER_TOOL = "lookupOrder"
LONG_ANSWER_CAP = 100_000

_CALL_TOOL = re.compile(r"^call tool ([A-Za-z0-9_]+)\s*(\{.*\})?$", re.DOTALL)
_ORDER = re.compile(r"order\s*#?(\d+)", re.IGNORECASE)
_LONG = re.compile(r"long (\d+)")
_MARKDOWN = re.compile(r"\bmarkdown\b", re.IGNORECASE)
_WORD = re.compile(r"\S+\s*|\s+")

MARKDOWN_SAMPLE = """# Markdown sample

This answer has **bold**, _italic_, ~~strike~~ and `inline code`.

```python
def greet(name):
    return f"Hello, {name}!"
```

See [the example site](https://example.com) for more.

- first bullet
- second bullet

1. step one
2. step two

Comparisons: 1 < 2 > 0 & done."""


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """A tool call the agent makes; ``rule`` decides how the continuation reads."""

    name: str
    input: Any
    rule: Literal["order", "tool"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One assistant message: text first, then any tool calls."""

    text: str
    calls: list[PlannedCall] = field(default_factory=list)

    @property
    def finish_reason(self) -> str:
        return "tool-calls" if self.calls else "stop"


def answer(message: str, user_message_number: int) -> Reply:
    """The reply to ``message``, the ``user_message_number``-th user message of its conversation."""
    command = _CALL_TOOL.match(message.strip())
    if command:
        args = _json_object(command.group(2)) if command.group(2) else {}
        if args is not None:
            return Reply("", [PlannedCall(command.group(1), args, "tool")])
    order = _ORDER.search(message)
    if order:
        number = order.group(1)
        return Reply(f"Let me check order {number}.", [PlannedCall(ORDER_TOOL, {"orderId": number}, "order")])
    long = _LONG.search(message)
    if long:
        return Reply(long_text(int(long.group(1))))
    if _MARKDOWN.search(message):
        return Reply(MARKDOWN_SAMPLE)
    return Reply(f'You said: "{message}". This is message {user_message_number} of this conversation.')


def continue_after(results: list[tuple[PlannedCall, Any]]) -> Reply:
    """The reply once every tool call of the previous round has its output."""
    lines = []
    for call, output in results:
        shown = json.dumps(output, sort_keys=True)
        if call.rule == "order" and isinstance(call.input, dict):
            lines.append(f"Here is what I found for order {call.input.get('orderId')}: {shown}")
        else:
            lines.append(f"Tool {call.name} returned: {shown}")
    return Reply("\n".join(lines))


def long_text(minimum: int) -> str:
    """Numbered sentences until at least ``minimum`` characters (capped), paragraphs of five."""
    target = min(minimum, LONG_ANSWER_CAP)
    out: list[str] = []
    length = 0
    number = 0
    while length < target or number == 0:
        number += 1
        if number > 1:
            sep = "\n\n" if (number - 1) % 5 == 0 else " "
            out.append(sep)
            length += len(sep)
        sentence = f"This is sentence {number} of the long answer."
        out.append(sentence)
        length += len(sentence)
    return "".join(out)


def words(text: str) -> list[str]:
    """Word-sized deltas (each word with its trailing whitespace); they concatenate to ``text``."""
    return _WORD.findall(text)


def _json_object(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
