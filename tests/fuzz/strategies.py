"""Hypothesis strategies for hostile HTTP requests: bodies, headers and encodings.

Bodies come in three families, mixed by :func:`bodies_for`: known-pathological inputs (invalid
UTF-8, deep JSON nesting, huge numbers, thousands of form fields), random bytes, and mutations of
a valid request of the surface (byte flips and cuts, JSON subtrees replaced by random values,
form fields dropped, repeated and rewritten), so the parsers behind the signature check are
reached with almost-valid input.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from hypothesis import strategies as st

from tests.fuzz.surfaces import FORM, JSON, Headers, Surface

#: examples per fuzz test; raise it (e.g. 2000) to fuzz for longer than CI does
EXAMPLES = int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "0")) or None


def examples(ci_default: int) -> int:
    """``SWITCHBOARD_FUZZ_EXAMPLES`` when set, else the per-test default sized for CI."""
    return EXAMPLES or ci_default


_deep_payload = quote("[" * 5000 + "]" * 5000)


def _reply_chain(depth: int) -> bytes:
    """A Telegram update whose message replies to a message that replies to ... ``depth`` times."""
    message: dict[str, Any] = {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "x"}
    for n in range(depth):
        message = {"message_id": n + 2, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "x",
                   "from": {"id": 1, "is_bot": False, "first_name": "a"}, "reply_to_message": message}
    return json.dumps({"update_id": 1, "message": message}).encode()


PATHOLOGICAL: tuple[bytes, ...] = (
    b"",
    b"\xff\xfe\xfd\x00",  # not UTF-8 at all
    b'{"update_id": 1, "message": {"text": "\xff"}}',  # invalid UTF-8 inside a JSON string
    b'{"update_id": 1, "message": {"text": "\\ud800"}}',  # a lone surrogate, valid JSON
    b"[" * 100_000,  # deep and unterminated
    b"[" * 5000 + b"]" * 5000,  # deep and valid: the stdlib parser recurses
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"1e999999",
    b"9" * 100_000,  # over Python's int-from-string limit
    b'{"update_id": NaN, "object": Infinity}',
    b"null",
    b"[]",
    b'"just a string"',
    b"a=1&" * 50_000,  # many form fields
    b"MessageSid=SM1&MessageSid=SM2&From=%2B1555&From=%2B1666&Body=a&Body=b",  # repeated fields
    b"%ZZ%&&==&=%",  # broken percent-encoding
    b"From=%ff%fe&Body=%c3%28",  # percent-encoded invalid UTF-8
    b"\x00" * 1000,
    b"payload=" + _deep_payload.encode(),  # Slack interactivity with deep JSON
    b"payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%5B1%2C2%5D%7D",
    b"payload=not-json",
    b"\xef\xbb\xbf{}",  # a UTF-8 byte-order mark
    _reply_chain(450),  # PTB builds nested objects recursively
    "{\"object\": \"page\", \"entry\": [{\"messaging\": [{\"message\": {\"text\": \"ü\"}}]}]}".encode("utf-16"),
)

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node of a JSON document (the root included)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, new)}
    copy = list(doc)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@st.composite
def mutated_json(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid JSON body with a few nodes replaced, deleted or wrapped."""
    doc = json.loads(valid)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        action = draw(st.sampled_from(["replace", "wrap", "nest"]))
        node: Any = doc
        for key in path:
            node = node[key]
        if action == "replace":
            new: Any = draw(json_values)
        elif action == "wrap":
            new = [node]
        else:
            new = node
            for _ in range(draw(st.integers(50, 300))):
                new = {"a": new}
        doc = _replace(doc, path, new)
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def mutated_form(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid form body with fields dropped, repeated, rewritten or added."""
    pairs = parse_qsl(valid.decode(), keep_blank_values=True)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["drop", "repeat", "rewrite", "add"]))
        if action == "add" or not pairs:
            pairs.append((draw(st.text(max_size=12)), draw(st.text(max_size=40))))
            continue
        index = draw(st.integers(0, len(pairs) - 1))
        name, value = pairs[index]
        if action == "drop":
            pairs.pop(index)
        elif action == "repeat":
            pairs.insert(index, (name, draw(st.text(max_size=40)) if draw(st.booleans()) else value))
        else:
            pairs[index] = (name, draw(st.text(max_size=200) | st.sampled_from(["", "0", "-1", "9" * 30, "\x00"])))
    return urlencode(pairs).encode()


@st.composite
def mutated_bytes(draw: st.DrawFn, valid: bytes) -> bytes:
    """Byte-level damage: flips, cuts, insertions, duplication."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        if action == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[i:]
        elif action == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[i:i] = data[i:]
    return bytes(data)


def bodies_for(surface: Surface) -> st.SearchStrategy[bytes]:
    valid = st.integers(1, 10**9).map(surface.valid)
    structured = valid.flatmap(mutated_json if surface.content_type == JSON else mutated_form)
    # Weighted towards almost-valid input: that is what reaches the parsers behind the signature.
    return st.one_of(
        st.sampled_from(PATHOLOGICAL),
        st.binary(max_size=512),
        valid.flatmap(mutated_bytes),
        structured,
        structured,
        valid,
    )


CONTENT_TYPES = (
    None, JSON, FORM, "application/json; charset=utf-8", "application/json; charset=latin-1",
    f"{FORM}; charset=utf-16", "multipart/form-data; boundary=xyz", "text/plain", "text/xml",
    "*/*", "application/json\t; x=\"unterminated", "",
)
# Mostly printable (what gets past the HTTP parser to our code), sometimes raw bytes.
_printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(str.encode)
_raw = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_header_value = st.one_of(_printable, _printable, _printable, _raw)
_header_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-ABCXYZ", min_size=1, max_size=20).map(str.encode)
_interesting_names = st.sampled_from([
    b"X-Slack-Signature", b"X-Slack-Request-Timestamp", b"X-Slack-Retry-Num", b"X-Twilio-Signature",
    b"X-Telegram-Bot-Api-Secret-Token", b"X-Hub-Signature-256", b"Origin", b"X-Forwarded-For",
    b"Authorization", b"Accept", b"Cookie", b"Expect", b"Content-Language",
])


@st.composite
def headers_for(draw: st.DrawFn, surface: Surface, signature: Headers) -> Headers:
    """Headers of a hostile request: a content type, maybe an encoding, noise, and ``signature``."""
    headers: Headers = []
    content_type = draw(st.sampled_from(CONTENT_TYPES) | st.just(surface.content_type))
    if content_type is not None:
        headers.append((b"Content-Type", content_type.encode("latin-1")))
    encoding = draw(st.sampled_from([b"gzip", b"deflate", b"br", b"identity", b"x-bogus"])) if draw(
        st.integers(0, 7)) == 0 else None
    if encoding is not None:
        headers.append((b"Content-Encoding", encoding))
    headers += signature
    for _ in range(draw(st.integers(0, 3))):
        name = draw(_interesting_names | _header_name)
        value = draw(_header_value)
        if name.lower() == b"expect":
            # aiohttp itself answers 500 to an Expect header that is not UTF-8, before any of our
            # code runs (see tests/test_hardening_limits.py::test_expect_header_not_utf8): ASCII here.
            value = value.decode("latin-1").encode("ascii", "ignore")
        headers.append((name, value))
    return draw(st.permutations(headers))
