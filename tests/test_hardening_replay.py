"""Replayed and tampered webhooks are refused before anything happens; secrets compare in constant time.

Each attack goes through a real gateway with the platform's fake API, and the proof of "no
processing" is what the Chatbase emulator and the fake recorded: nothing.
"""

from __future__ import annotations

import ast
import json
import time
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import channels.slack.signature
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes.meta import APP_SECRET, VERIFY_TOKEN, FakeGraph, payload, post_signed, signature, text_item
from tests.fakes.slack import SECRET as SLACK_SECRET
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_inbound import event_body, message, signed_headers
from tests.fakes.telegram import SECRET as TG_SECRET
from tests.fakes.telegram import FakeTelegram, post_update, text_update
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, message_params

ROOT = Path(__file__).resolve().parent.parent
USER, BOT = "+15551230001", "+15557654321"


def agent_calls(gw: GatewayUnderTest) -> int:
    return len(gw.emulator.requests)


@asynccontextmanager
async def all_channels() -> AsyncIterator[tuple[GatewayUnderTest, dict[str, Any]]]:
    async with FakeSlack() as slack, FakeTwilio() as twilio, FakeTelegram() as tg, FakeGraph() as graph:
        twilio_keys = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "api_base": twilio.url}
        config = {
            "slack": {"type": "slack", "bot_token": slack.token, "signing_secret": SLACK_SECRET,
                      "api_base": slack.api_base},
            "sms": {"type": "twilio-sms", "from": BOT, **twilio_keys},
            "wa": {"type": "twilio-whatsapp", "from": "whatsapp:+14155238886", **twilio_keys},
            "tg": {"type": "telegram", "bot_token": tg.token, "secret_token": TG_SECRET, "api_base": tg.api_base},
            "tg2": {"type": "telegram", "bot_token": tg.token, "secret_token": "another-bots-secret",
                    "api_base": tg.api_base},
            "fb": {"type": "messenger", "page_access_token": graph.token, "app_secret": APP_SECRET,
                   "verify_token": VERIFY_TOKEN, "api_base": graph.api_base},
        }
        async with running_gateway(config) as gw:
            await gw.idle()
            yield gw, {"slack": slack, "twilio": twilio, "telegram": tg, "graph": graph}


def outbound(fakes: dict[str, Any]) -> dict[str, int]:
    return {"slack": len(fakes["slack"].calls), "twilio": len(fakes["twilio"].requests),
            "telegram": len(fakes["telegram"].calls), "graph": len(fakes["graph"].calls)}


@pytest.fixture
def slack_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The Slack signature check's clock, moved forward by ``offset[0]`` seconds."""
    offset = [0.0]
    fake = types.SimpleNamespace(time=lambda: time.time() + offset[0])
    monkeypatch.setattr(channels.slack.signature, "time", fake)
    return offset


async def post_slack(gw: GatewayUnderTest, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.post(f"{gw.url}/webhooks/slack", data=body,
                                                          headers=headers) as resp:
        return resp.status


async def test_a_captured_slack_request_replayed_after_5_minutes_is_refused(slack_clock: list[float]) -> None:
    async with all_channels() as (gw, fakes):
        body = event_body(message("transfer the money", user="U0000009"), event_id="EvReplay1")
        captured = signed_headers(body)  # what an eavesdropper (or a log) kept
        before = outbound(fakes)
        slack_clock[0] = 5 * 60 + 1
        assert await post_slack(gw, body, captured) == 401
        slack_clock[0] = -(5 * 60 + 1)  # a clock skewed the other way: "from the future"
        assert await post_slack(gw, body, captured) == 401
        await gw.idle()
        assert agent_calls(gw) == 0 and outbound(fakes) == before
        slack_clock[0] = 5 * 60 - 5  # inside the window the same request is genuine
        assert await post_slack(gw, body, captured) == 200
        await gw.idle()
        assert agent_calls(gw) > 0


async def test_a_slack_signature_never_transfers_to_another_body_or_timestamp() -> None:
    async with all_channels() as (gw, _):
        body = event_body(message("hello", user="U0000008"), event_id="EvTamper1")
        headers = signed_headers(body)
        other = body.replace(b"hello", b"HELLO")
        assert await post_slack(gw, other, headers) == 401
        moved = {**headers, "X-Slack-Request-Timestamp": str(int(headers["X-Slack-Request-Timestamp"]) - 1)}
        assert await post_slack(gw, body, moved) == 401
        await gw.idle()
        assert agent_calls(gw) == 0


async def test_a_twilio_request_with_one_parameter_changed_is_refused() -> None:
    async with all_channels() as (gw, fakes), aiohttp.ClientSession() as http:
        twilio: FakeTwilio = fakes["twilio"]
        url = f"{gw.url}/webhooks/sms"
        params = message_params("what is my balance?", USER, BOT, "SMtamper0000000000000000000000001")
        genuine = twilio.sign(url, params)
        before = outbound(fakes)
        tampered = [
            ({**params, "Body": "send me everyone's balance"}, url),  # one value changed
            ({**params, "From": "+15559999999"}, url),  # someone else's number
            ({**params, "Extra": "1"}, url),  # a parameter added
            ({k: v for k, v in params.items() if k != "NumMedia"}, url),  # a parameter removed
            (params, f"{gw.url}/webhooks/wa"),  # the same request at another channel's URL
            (params, f"{url}?x=1"),  # a query string added
        ]
        for changed, target in tampered:
            status, _, _ = await twilio.post(http, target, changed, signature=genuine)
            assert status == 403, (changed, target)
        await gw.idle()
        assert agent_calls(gw) == 0 and outbound(fakes) == before


async def test_a_meta_body_reserialised_with_other_whitespace_is_refused() -> None:
    async with all_channels() as (gw, fakes), aiohttp.ClientSession() as http:
        body = payload([text_item("hi there", mid="m.tamper.1")])
        genuine = signature(body)
        doc = json.loads(body)
        variants = [
            json.dumps(doc, indent=2).encode(),  # same JSON, other whitespace
            json.dumps(doc, separators=(",", ":")).encode(),
            json.dumps(doc, sort_keys=True).encode(),  # same object, other key order
            body + b"\n",
            json.dumps(doc, ensure_ascii=False).replace("hi there", "hi th\u00e9re").encode(),
        ]
        before = outbound(fakes)
        for variant in variants:
            assert variant != body
            async with http.post(f"{gw.url}/webhooks/fb", data=variant, headers={
                    "Content-Type": "application/json", "X-Hub-Signature-256": genuine}) as resp:
                assert resp.status == 403, variant[:80]
        await gw.idle()
        assert agent_calls(gw) == 0 and outbound(fakes) == before
        assert (await post_signed(f"{gw.url}/webhooks/fb", body))[0] == 200  # the original still works


@pytest.mark.parametrize("secret", ["wrong", "another-bots-secret", TG_SECRET + "x", TG_SECRET.upper(),
                                    TG_SECRET[:-1], "", None])
async def test_a_telegram_update_with_the_right_body_and_a_wrong_secret_is_refused(secret: str | None) -> None:
    async with all_channels() as (gw, fakes):
        before = outbound(fakes)
        update = text_update("hello", chat_id=4242, user_id=4242)
        response = await post_update(f"{gw.url}/webhooks/tg", update, secret=secret)
        assert response.status == 403
        await gw.idle()
        assert agent_calls(gw) == 0 and outbound(fakes) == before
        assert (await post_update(f"{gw.url}/webhooks/tg", update)).status == 200  # the genuine one


# -- constant-time comparisons ---------------------------------------------------------------------
_SECRET_WORDS = ("signature", "secret", "token", "digest", "hmac", "password", "passwd", "mac")
_SCANNED = ("channels", "gateway", "adapters")


def _names(node: ast.AST) -> set[str]:
    """Identifiers an expression is built from (``self.settings.app_secret`` → app_secret, ...)."""
    out: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.add(sub.attr)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.lower().startswith("x-"):
            out.add(sub.value)  # a header name such as "X-Slack-Signature"
    return out


def _secret_like(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return False  # comparing with a literal ("socket", None, "") is never a secret comparison
    names = {n.lower() for n in _names(node)}
    return any(any(word in n.split("_") or n.endswith(word) for word in _SECRET_WORDS) for n in names)


def insecure_comparisons(source: str, filename: str) -> list[str]:
    """``==``/``!=`` comparisons where an operand looks like a signature, secret or token."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
            if isinstance(op, ast.Eq | ast.NotEq) and (_secret_like(left) or _secret_like(right)):
                if isinstance(left, ast.Constant) or isinstance(right, ast.Constant):
                    continue
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_scanner_catches_a_plain_comparison_of_a_signature() -> None:
    bad = "def verify(request, secret):\n    return request.headers['X-Hub-Signature-256'] == expected(secret)\n"
    assert insecure_comparisons(bad, "bad.py") == [
        "bad.py:2: request.headers['X-Hub-Signature-256'] == expected(secret)"]
    good = "def verify(given, secret):\n    return hmac.compare_digest(given, secret)\n"
    assert insecure_comparisons(good, "good.py") == []
    assert insecure_comparisons("if token.kind == other.kind: pass\n", "x.py") == ["x.py:1: token.kind == other.kind"]


def test_no_signature_secret_or_token_is_compared_with_a_plain_equality() -> None:
    found = []
    for package in _SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            found += insecure_comparisons(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []


def test_every_inbound_check_uses_a_constant_time_primitive() -> None:
    """The modules that check platform signatures, secrets and tokens use compare_digest (or Twilio's SDK)."""
    checks = {
        "channels/slack/signature.py": "hmac.compare_digest",
        "channels/telegram/channel.py": "hmac.compare_digest",
        "channels/meta/webhook.py": "hmac.compare_digest",
        "channels/twilio/base.py": "RequestValidator",
        "channels/teams/auth.py": "jwt.decode(",  # RS256 signatures, checked by PyJWT
    }
    for path, primitive in checks.items():
        assert primitive in (ROOT / path).read_text(), path
    admin = ROOT / "gateway" / "admin"
    if admin.exists():  # the operator API's Bearer token
        assert any("compare_digest" in p.read_text() for p in admin.rglob("*.py"))
