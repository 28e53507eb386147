"""The web chat's input checks, without a server: body validation, origins, rate and concurrency."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.web import WebChannel
from channels.web.guard import (
    SESSION_ID,
    ChatRequestError,
    ClientSlots,
    OriginPolicy,
    RateLimiter,
    normalise_origin,
    parse_chat_body,
    parse_feedback_body,
)
from gateway.errors import ConfigError


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def refusal(raw: bytes, max_chars: int = 100) -> tuple[int, str]:
    with pytest.raises(ChatRequestError) as info:
        parse_chat_body(raw, max_chars)
    return info.value.status, info.value.code


def test_valid_body_is_accepted_and_trimmed() -> None:
    chat = parse_chat_body(body(sessionId="abc_DEF-123", message="  hello  "), 100)
    assert (chat.session_id, chat.text) == ("abc_DEF-123", "hello")


@pytest.mark.parametrize(
    "session_id",
    ["short", "x" * 65, "has space1", "dots.are.out", "../../etc/passwd", "ünïcode12", "a|slack|U1x", 12345678, None],
)
def test_bad_session_ids_are_400(session_id: object) -> None:
    assert refusal(body(sessionId=session_id, message="hi")) == (400, "invalid_session_id")


@pytest.mark.parametrize("message", ["", "   \n ", None, 42, ["hi"], {"text": "hi"}])
def test_missing_or_empty_message_is_400(message: object) -> None:
    assert refusal(body(sessionId="session-1", message=message)) == (400, "invalid_message")


def test_message_over_the_limit_is_413_and_at_the_limit_is_fine() -> None:
    assert parse_chat_body(body(sessionId="session-1", message="é" * 100), 100).text == "é" * 100
    assert refusal(body(sessionId="session-1", message="é" * 101)) == (413, "message_too_long")


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[1,2]", b'"text"', b"\xff\xfe", b"[" * 100_000, b'{"sessionId": "session-1"']
)
def test_malformed_bodies_are_400(raw: bytes) -> None:
    assert refusal(raw)[0] == 400


def test_feedback_bodies() -> None:
    vote = parse_feedback_body(body(sessionId="session-1", messageId="msg_1a2b", feedback="negative"))
    assert (vote.session_id, vote.message_id, vote.feedback) == ("session-1", "msg_1a2b", "negative")
    assert parse_feedback_body(body(sessionId="session-1", messageId="m-1", feedback=None)).feedback is None
    for bad in [
        body(sessionId="session-1", messageId="msg_1", feedback="meh"),
        body(sessionId="session-1", messageId="msg_1", feedback=["positive"]),
        body(sessionId="session-1", messageId="msg_1", feedback={"v": 1}),
        body(sessionId="session-1", messageId=["msg_1"], feedback="positive"),
        body(sessionId="session-1", messageId="msg_1"),  # a missing vote is not a silent "clear"
        body(sessionId="session-1", messageId="../../x", feedback="positive"),
        body(sessionId="session-1", messageId="", feedback="positive"),
        body(sessionId="bad", messageId="msg_1", feedback="positive"),
    ]:
        with pytest.raises(ChatRequestError) as info:
            parse_feedback_body(bad)
        assert info.value.status == 400


def test_origins_are_normalised_and_junk_is_refused() -> None:
    assert normalise_origin("HTTPS://Shop.Example.com/") == "https://shop.example.com"
    assert normalise_origin("http://127.0.0.1:3000") == "http://127.0.0.1:3000"
    assert normalise_origin("*") == "*"
    for bad in ["shop.example.com", "https://shop.example.com/chat", "ftp://x.org", "https://", "null"]:
        with pytest.raises(ValueError):
            normalise_origin(bad)


def test_a_bad_origin_in_config_is_one_line_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        WebChannel.validate("site", {"type": "web", "allowed_origins": ["https://ok.example", "example.org"]})
    assert str(info.value).startswith("channels.site.allowed_origins")
    assert "example.org" in str(info.value)
    with pytest.raises(ConfigError, match=r"channels\.site\.colour: unknown key"):
        WebChannel.validate("site", {"type": "web", "colour": "blue"})


def test_origin_policy_same_origin_by_default() -> None:
    policy = OriginPolicy((), "https://bot.example.com")
    own = "http://10.0.0.5:8080"
    assert policy.allows(None, own)  # curl and servers send no Origin
    assert policy.allows("https://bot.example.com", own)
    assert policy.allows("http://10.0.0.5:8080", own)
    assert not policy.allows("https://evil.example", own)
    assert not policy.allows("null", own)
    assert not policy.allows("http://bot.example.com", own)  # scheme is part of the origin
    assert policy.cors_headers("https://evil.example", own) == {}


def test_origin_policy_listed_and_any() -> None:
    listed = OriginPolicy(("https://shop.example",), "https://bot.example.com")
    assert listed.allows("https://shop.example", "https://bot.example.com")
    assert listed.cors_headers("https://shop.example", "x")["Access-Control-Allow-Origin"] == "https://shop.example"
    assert not listed.allows("https://shop.example.evil", "https://bot.example.com")
    anyone = OriginPolicy(("*",), "https://bot.example.com")
    assert anyone.allows("https://whoever.example", "https://bot.example.com")
    assert anyone.cors_headers("https://whoever.example", "x") == {"Access-Control-Allow-Origin": "*"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_bursts_then_refuses_with_retry_after_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    for _ in range(3):
        limiter.take("s1")
    with pytest.raises(ChatRequestError) as info:
        limiter.take("s1")
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "20"  # one token every 20 s at 3/min
    limiter.take("other-session")  # buckets are per session
    clock.now += 20
    limiter.take("s1")
    with pytest.raises(ChatRequestError):
        limiter.take("s1")


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(5, max_sessions=100, clock=Clock())
    for n in range(1000):
        limiter.take(f"session-{n}")
    assert len(limiter._buckets) == 100


def test_client_slots_cap_concurrent_requests_per_address() -> None:
    slots = ClientSlots(2)
    with slots.hold("1.2.3.4"), slots.hold("1.2.3.4"):
        with pytest.raises(ChatRequestError) as info, slots.hold("1.2.3.4"):
            pass
        assert info.value.status == 429
        with slots.hold("5.6.7.8"):
            pass
    with slots.hold("1.2.3.4"), slots.hold("1.2.3.4"):
        pass  # released again
    assert slots._busy == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body_is_accepted_or_refused_with_a_4xx(raw: bytes) -> None:
    try:
        chat = parse_chat_body(raw, 100)
    except ChatRequestError as exc:
        assert exc.status in (400, 413)
    else:
        assert SESSION_ID.fullmatch(chat.session_id) and chat.text and len(chat.text) <= 100
    try:
        vote = parse_feedback_body(raw)
    except ChatRequestError as exc:
        assert exc.status == 400
    else:
        assert vote.feedback in ("positive", "negative", None)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_any_feedback_field_is_accepted_or_refused_with_400(value: object) -> None:
    raw = json.dumps({"sessionId": "session-1", "messageId": value, "feedback": value}).encode()
    try:
        parse_feedback_body(raw)
    except ChatRequestError as exc:
        assert exc.status == 400


@settings(max_examples=200, deadline=None)
@given(session_id=st.text(max_size=70), message=json_values)
def test_only_well_formed_session_ids_and_text_messages_pass(session_id: str, message: object) -> None:
    raw = json.dumps({"sessionId": session_id, "message": message}).encode()
    text_ok = isinstance(message, str) and bool(message.strip()) and len(message) <= 100
    ok = bool(SESSION_ID.fullmatch(session_id)) and text_ok
    try:
        parse_chat_body(raw, 100)
    except ChatRequestError:
        assert not ok
    else:
        assert ok
