"""Fuzzing the operator API under ``/admin`` (enabled: the live gateway sets ``admin_token``).

Properties: without the exact token nothing under ``/admin`` is ever a 2xx, and nothing is
read, changed or sent; with it, hostile paths, parameters and bodies are still never a 500 or a
traceback. The paths come from the API's own OpenAPI document when the build serves one, plus
guesses and traversal attempts, so the test follows the API as it grows.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.live import ADMIN_TOKEN, LiveGateway, RawRequest
from tests.fuzz.strategies import PATHOLOGICAL, examples, json_values

FUZZ = settings(
    max_examples=examples(300), deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
GUESSES = ["/admin", "/admin/", "/admin/openapi.json", "/admin/identities", "/admin/conversations",
           "/admin/x/../identities", "/admin/%2e%2e/admin/identities", "/admin//identities", "/admin/identities/%00",
           "/ADMIN/identities", "/admin/identities?cursor=%ff&limit=-1", "/admin/identities?limit=99999999999"]


_documented: dict[int, list[str]] = {}


def documented_paths(live: LiveGateway) -> list[str]:
    """Path templates from ``/admin/openapi.json`` (none when this build has no admin API)."""
    if id(live) not in _documented:
        _documented[id(live)] = _fetch_paths(live)
    return _documented[id(live)]


def _fetch_paths(live: LiveGateway) -> list[str]:
    auth = [(b"Authorization", f"Bearer {ADMIN_TOKEN}".encode())]
    response = live.send(RawRequest("GET", "/admin/openapi.json", auth))
    if response.status != 200:
        return []
    return sorted(json.loads(response.body).get("paths", {}))


def authorization_values() -> st.SearchStrategy[bytes | None]:
    token = ADMIN_TOKEN.encode()
    known = st.sampled_from([b"Bearer " + token, b"bearer " + token, b"Bearer " + token[:-1],
                             b"Bearer " + token + b"x", b"Bearer " + token.upper(), b"Basic " + token, token,
                             b"Bearer", b"Bearer ", b"Bearer " + token + b"\x00", b"Token " + token,
                             b"Bearer \xc3\xa9t\xc3\xa9", b"Bearer \xff\xfe"])
    noise = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    return st.one_of(st.none(), known, known, noise)


def authorized(value: bytes | None) -> bool:
    """The exact token under the Bearer scheme (the scheme name is case-insensitive, RFC 9110)."""
    if value is None:
        return False
    scheme, _, rest = value.partition(b" ")
    return scheme.lower() == b"bearer" and rest.strip() == ADMIN_TOKEN.encode()


def fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", quote(value, safe=""), template)


@FUZZ
@given(data=st.data())
def test_hostile_admin_requests(live: LiveGateway, data: st.DataObject) -> None:
    templates = documented_paths(live) or ["/admin/identities/{id}"]
    path = data.draw(st.sampled_from(GUESSES) | st.sampled_from(templates).map(
        lambda t: fill(t, data.draw(st.text(max_size=40) | st.sampled_from(["..", "%2F", "a" * 500, "-1"])))))
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
    auth = data.draw(authorization_values())
    body = data.draw(st.sampled_from(PATHOLOGICAL) | json_values.map(lambda v: json.dumps(v).encode()))
    headers = [(b"Content-Type", b"application/json")]
    if auth is not None:
        headers.append((b"Authorization", auth))
    before, logged = live.counts(), live.problem_count()
    response = live.send(RawRequest(method, path, headers, body))
    live.idle()
    assert 0 < response.status < 500, (method, path, auth, response.status, response.body[:300])
    assert live.problems(since=logged) == []
    if not authorized(auth):
        assert not 200 <= response.status < 300, (method, path, auth, response.status)
        assert live.calls_since(before) == {}
