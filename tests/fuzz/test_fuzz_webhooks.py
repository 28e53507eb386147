"""Fuzzing every platform webhook of a live gateway.

Unsigned (or wrongly signed) hostile requests must be refused with a 4xx and leave no trace: no
agent call, no outbound platform call, no traceback in the logs. Correctly signed hostile
requests (a platform bug, or a leaked secret) may be processed, but still never produce a 500 or
a traceback. ``SWITCHBOARD_FUZZ_EXAMPLES=2000`` runs each test for longer than CI does.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.live import LiveGateway, RawRequest
from tests.fuzz.strategies import bodies_for, examples, headers_for
from tests.fuzz.surfaces import (
    WEBHOOKS,
    Headers,
    Surface,
    forged,
    sign_meta,
    sign_slack,
    sign_twilio,
    stale_slack_headers,
)

FUZZ = settings(
    max_examples=examples(400), deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@st.composite
def forged_signature(draw: st.DrawFn, surface: Surface, port: int, target: str, body: bytes) -> Headers:
    """No signature, a wrong one, or a genuine one for another body, time or secret."""
    other_body = body + b" " if draw(st.booleans()) else surface.valid(draw(st.integers(1, 10**9)))
    choice = draw(st.sampled_from(["none", "garbage", "other-body", "other-platform", "stale"]))
    if choice == "none":
        return []
    if choice == "other-body":
        return forged(surface, port, target, body, other_body)
    if choice == "other-platform":
        signer = draw(st.sampled_from([s for s in (sign_slack, sign_twilio, sign_meta) if s is not surface.sign]))
        return signer(port, target, body)
    if choice == "stale":
        return stale_slack_headers(body, draw(st.sampled_from([301.0, 3600.0, -301.0])))
    name = draw(st.sampled_from([b"X-Slack-Signature", b"X-Twilio-Signature", b"X-Hub-Signature-256",
                                 b"X-Telegram-Bot-Api-Secret-Token"]))
    value = draw(st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
                 | st.sampled_from([b"v0=", b"sha256=", b"sha256=" + b"0" * 64, b"\xff\xfe", b"s3cr3t-Token_valuX"]))
    return [(name, value), (b"X-Slack-Request-Timestamp", b"1700000000")]


def _query(draw: st.DrawFn, surface: Surface) -> str:
    return draw(st.sampled_from(surface.queries) | st.text(max_size=20).map(lambda q: q.replace(" ", "+")
                                                                           .replace("#", "%23")))


@FUZZ
@given(data=st.data())
def test_unsigned_hostile_requests_are_refused_without_side_effects(live: LiveGateway, data: st.DataObject) -> None:
    surface = data.draw(st.sampled_from(WEBHOOKS))
    target = surface.target(_query(data.draw, surface))
    body = data.draw(bodies_for(surface))
    signature = data.draw(forged_signature(surface, live.port, target, body))
    headers = data.draw(headers_for(surface, signature))
    before, logged = live.counts(), live.problem_count()
    response = live.send(RawRequest("POST", target, headers, body))
    assert 400 <= response.status < 500, (response.status, response.body[:300])
    live.idle()
    assert live.problems(since=logged) == []
    assert live.calls_since(before) == {}


@FUZZ
@given(data=st.data())
def test_signed_hostile_requests_never_fail_with_a_500(live: LiveGateway, data: st.DataObject) -> None:
    surface = data.draw(st.sampled_from(WEBHOOKS))
    target = surface.target(_query(data.draw, surface))
    body = data.draw(bodies_for(surface))
    headers = data.draw(headers_for(surface, surface.sign(live.port, target, body)))
    logged = live.problem_count()
    response = live.send(RawRequest("POST", target, headers, body))
    assert 0 < response.status < 500, (response.status, response.body[:300])
    assert live.problems(since=logged) == []


def test_signed_hostile_requests_leave_no_traceback_once_processed(live: LiveGateway) -> None:
    """What the signed fuzzing accepted was answered (or dropped) in the background without a crash."""
    live.idle(60)
    assert live.problems() == []


@FUZZ
@given(method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO"]),
       surface=st.sampled_from(WEBHOOKS), query=st.text(max_size=30))
def test_other_methods_are_refused(live: LiveGateway, method: str, surface: Surface, query: str) -> None:
    from urllib.parse import quote

    target = surface.path + "?" + quote(query, safe="=&")
    before, logged = live.counts(), live.problem_count()
    response = live.send(RawRequest(method, target))
    meta_handshake = method == "GET" and surface.name in ("messenger", "instagram", "whatsapp-cloud")
    assert response.status in ((403,) if meta_handshake else (405, 400, 501)), response.status
    assert live.problems(since=logged) == []
    assert live.calls_since(before) == {}
