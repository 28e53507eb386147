"""The emulator's injected faults and its HTTP control endpoints."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from adapters.emulator import Emulator
from tests.emulator.support import ROOT, Api, error_of, streamed_text

# -- faults and control endpoints -----------------------------------------------------------------


async def test_fail_next_and_retry_after(api: Api, emulator: Emulator) -> None:
    emulator.faults.fail_next(429, count=2, retry_after=0.5)
    for _ in range(2):
        status, headers, doc = await api.chat(message="hi")
        assert status == 429 and headers["Retry-After"] == "0.5"
        assert error_of(doc)[0] == "RATE_LIMIT_TOO_MANY_REQUESTS"
    assert (await api.chat(message="hi"))[0] == 200
    emulator.faults.fail_next(403, code="CHAT_AGENT_CREDITS_EXHAUSTED")
    status, _, doc = await api.chat(message="hi")
    assert status == 403 and error_of(doc)[0] == "CHAT_AGENT_CREDITS_EXHAUSTED"


async def test_cut_stream_has_text_but_no_end(api: Api, emulator: Emulator) -> None:
    emulator.faults.cut_next_stream()
    _, _, events = await api.chat(message="long 200")
    kinds = [e if isinstance(e, str) else e["type"] for e in events]
    assert "finish" not in kinds and "[DONE]" not in kinds
    assert streamed_text(events).startswith("This is sentence 1")
    _, _, events = await api.chat(message="hi")  # only the next one
    assert events[-1] == "[DONE]"


async def test_latency_and_token_delay(api: Api, emulator: Emulator) -> None:
    emulator.faults.latency = 0.2
    started = time.monotonic()
    await api.call("GET", "/health")
    assert time.monotonic() - started >= 0.2
    emulator.faults.latency = 0
    emulator.faults.token_delay = 0.02
    started = time.monotonic()
    _, _, events = await api.chat(message="one two three four five")
    deltas = [e for e in events if isinstance(e, dict) and e["type"] == "text-delta"]
    assert len(deltas) == 14 and time.monotonic() - started >= 14 * 0.02


async def test_control_endpoints(api: Api, emulator: Emulator) -> None:
    status, _, doc = await api.call("POST", f"{api.root}/_emulator/faults", {"status": 503, "count": 2}, headers={})
    assert status == 200 and len(doc["data"]["pending_failures"]) == 2
    assert [(await api.call("GET", "/agents/a1/conversations"))[0] for _ in range(3)] == [503, 503, 200]

    await api.call(
        "POST", f"{api.root}/_emulator/faults",
        {"fail_next": {"status": 429, "retry_after": 1, "code": "RATE_LIMIT_TOO_MANY_REQUESTS"},
         "cut_next_stream": 1, "latency": 0, "token_delay": 0},
    )  # fmt: skip
    status, headers, _ = await api.chat(message="hi")
    assert status == 429 and headers["Retry-After"] == "1"
    _, _, events = await api.chat(message="long 100")
    assert "[DONE]" not in events

    status, _, doc = await api.call("POST", f"{api.root}/_emulator/faults", {"latency": -1})
    assert status == 400 and emulator.faults.latency == 0
    status, _, doc = await api.call("POST", f"{api.root}/_emulator/faults", {"status": 503, "cut_next_stream": 0})
    assert status == 400 and emulator.faults.snapshot()["pending_failures"] == []  # all or nothing

    _, _, recorded = await api.call("GET", f"{api.root}/_emulator/requests")
    last = recorded["data"][-1]
    assert last == {"method": "POST", "path": "/api/v2/agents/a1/chat", "json": {"message": "long 100"}, "query": {}}
    assert "any-key" not in json.dumps(recorded)
    assert emulator.requests[-1].json == {"message": "long 100"}

    status, _, _ = await api.call("POST", f"{api.root}/_emulator/reset")
    assert status == 200 and emulator.requests == [] and emulator.state.conversations == {}
    _, _, listing = await api.call("GET", "/agents/a1/conversations")
    assert listing["data"] == []


def test_run_emulator_prints_its_url_and_serves() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "adapters.emulator", "127.0.0.1", str(port)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        try:
            assert proc.stdout is not None
            assert f"http://127.0.0.1:{port}/api/v2" in proc.stdout.readline()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"GET /api/v2/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert conn.recv(100).startswith(b"HTTP/1.1 200")
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0  # SIGTERM is a clean stop


async def test_the_real_rate_limit_is_switched_on_over_the_control_endpoint(api: Api, emulator: Emulator) -> None:
    control = f"{api.root}/_emulator/faults"
    status, _, doc = await api.call("POST", control, {"rate_limit": {"enforced": True, "max": 0}})
    assert status == 400 and "rate_limit.max" in doc["error"]["message"]
    assert not emulator.rate_limiter.enforced  # a bad document changes nothing
    status, _, doc = await api.call("POST", control, {"rate_limit": {"enforced": True, "max": 2, "window": 30}})
    assert status == 200 and doc["data"]["rate_limit"] == {"enforced": True, "max": 2, "window": 30, "refused": 0}
    assert [(await api.chat(message="hi"))[0] for _ in range(2)] == [200, 200]
    status, headers, doc = await api.chat(message="hi")
    assert status == 429 and error_of(doc)[0] == "RATE_LIMIT_TOO_MANY_REQUESTS"
    assert 29 <= int(headers["Retry-After"]) <= 30 and headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Reset"]) > time.time() * 1000  # Unix milliseconds
    assert emulator.rate_limiter.refused == 1
    _, _, doc = await api.call("GET", control)
    assert doc["data"]["rate_limit"]["refused"] == 1


async def test_a_broken_off_answer_stays_in_history_as_sent(api: Api, emulator: Emulator) -> None:
    emulator.faults.cut_next_stream()
    _, _, events = await api.chat(message="long 300")
    [conversation] = emulator.state.conversations.values()
    _, _, doc = await api.call("GET", f"/agents/a1/conversations/{conversation.id}/messages")
    user, answer = doc["data"]
    assert user["role"] == "user" and answer["metadata"]["finishReason"] == "error"
    assert answer["parts"] == [{"type": "text", "text": streamed_text(events)}]
