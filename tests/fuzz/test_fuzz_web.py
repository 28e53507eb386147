"""Fuzzing the web chat API, the one inbound surface without a platform signature.

Properties: never a 500 or a traceback; the agent is called only for a request that was answered
with a stream (200), and that stream always ends with ``[DONE]``; a cross-origin caller gets CORS
headers only when it is listed in ``allowed_origins``, and an unlisted one is refused before
anything runs. ``SWITCHBOARD_FUZZ_EXAMPLES`` raises the number of examples.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.live import ALLOWED_ORIGIN, LiveGateway, RawRequest
from tests.fuzz.strategies import PATHOLOGICAL, examples, headers_for, json_values
from tests.fuzz.surfaces import WEB, sign_nothing

FUZZ = settings(
    max_examples=examples(300), deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

session_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True),  # valid
    st.text(max_size=80),
    st.sampled_from(["slack.T0000001.U0000001", "twilio-sms..+15551230001", "telegram.7000001.42", "../../admin",
                     "a" * 65, "short", "sess ion-id", "session-\u00e9t\u00e9", "\x00" * 10, "web.web.x-2b1555"]),
    json_values,
)
messages = st.one_of(st.text(max_size=200), st.just("x" * 4001), st.just("é" * 4000), st.just("   "), json_values)


@st.composite
def chat_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["object", "object", "object", "pathological", "binary"]))
    if kind == "pathological":
        return draw(st.sampled_from(PATHOLOGICAL))
    if kind == "binary":
        return draw(st.binary(max_size=300))
    doc = {"sessionId": draw(session_ids), "message": draw(messages), "messageId": draw(st.text(max_size=30)),
           "feedback": draw(st.sampled_from(["positive", "negative", None, "meh", 1]))}
    for key in draw(st.sets(st.sampled_from(list(doc)))):
        del doc[key]
    if draw(st.booleans()):
        doc[draw(st.text(max_size=10))] = draw(json_values)
    return json.dumps(doc).encode()


def origins(port: int) -> st.SearchStrategy[str | None]:
    own = f"http://127.0.0.1:{port}"
    return st.one_of(
        st.none(),
        st.sampled_from([ALLOWED_ORIGIN, own, ALLOWED_ORIGIN.upper(), "null", "https://evil.example",
                         ALLOWED_ORIGIN + ".evil.example", ALLOWED_ORIGIN + ":443", "http://shop.example.com",
                         "https://evil.example/" + ALLOWED_ORIGIN, f"http://127.0.0.1:{port + 1}", "*", ""]),
        st.text(max_size=40),
    )


def allowed(origin: str | None, port: int) -> bool:
    return origin is None or origin.lower() in (ALLOWED_ORIGIN, f"http://127.0.0.1:{port}")


@FUZZ
@given(data=st.data())
def test_hostile_chat_requests(live: LiveGateway, data: st.DataObject) -> None:
    surface = data.draw(st.sampled_from(WEB))
    body = data.draw(chat_bodies())
    headers = data.draw(headers_for(surface, sign_nothing(0, "", b"")))
    origin = data.draw(origins(live.port))
    headers = [h for h in headers if h[0].lower() != b"origin"]
    if origin is not None:
        headers.append((b"Origin", origin.encode("utf-8", "surrogatepass")))
    before, logged = live.counts(), live.problem_count()
    response = live.send(RawRequest("POST", surface.path, headers, body))
    live.idle()
    assert 0 < response.status < 500, (response.status, response.body[:300])
    assert live.problems(since=logged) == []
    cors = response.header("Access-Control-Allow-Origin")
    assert cors is None or cors.lower() == ALLOWED_ORIGIN
    if response.status in (200, 202):
        assert allowed(origin, live.port)
    if response.status == 200:
        assert surface.name == "web-messages"
        assert response.content.endswith(b"data: [DONE]\n\n"), response.content[-200:]
    elif surface.name == "web-messages":
        assert live.calls_since(before).get("agent", 0) == 0
    if response.status not in (200, 202):
        assert {k for k in live.calls_since(before) if k != "agent"} == set()


@FUZZ
@given(data=st.data())
def test_hostile_preflights(live: LiveGateway, data: st.DataObject) -> None:
    surface = data.draw(st.sampled_from(WEB))
    origin = data.draw(origins(live.port))
    headers = [(b"Access-Control-Request-Method", data.draw(st.sampled_from([b"POST", b"GET", b"DELETE", b"\xff"]))),
               (b"Access-Control-Request-Headers", data.draw(st.sampled_from([b"content-type", b"x-evil", b""])))]
    if origin is not None:
        headers.append((b"Origin", origin.encode("utf-8", "surrogatepass")))
    before, logged = live.counts(), live.problem_count()
    response = live.send(RawRequest("OPTIONS", surface.path, headers))
    assert 0 < response.status < 500
    assert live.problems(since=logged) == []
    assert live.calls_since(before) == {}
    cors = response.header("Access-Control-Allow-Origin")
    if origin is not None and origin.lower() == ALLOWED_ORIGIN:
        assert response.status == 204 and cors == origin
    else:
        assert cors is None
