"""Structured logs: JSON lines with turn/inbound fields, bodies only on request, level and format
from config and environment, and no configured secret in any line, whatever logged it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from gateway.config import LoggingSettings, parse_settings
from gateway.logs import REDACTED, configure_logging, log_context, secrets_of
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes import slack as fs
from tests.fakes import slack_inbound
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram, post_update, text_update

ECHO_TOKEN = "echo-Tok3n-s3cret"
ADMIN = "adm1n-T0ken-s3cret"
TOOL_AUTH = "Bearer t00l-Auth-s3cret"
TG_SECRET = "tg-webhook-S3cret"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger's handlers and level, restored after the test reconfigured them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def echo(gw: GatewayUnderTest, text: str, key: str, token: str = ECHO_TOKEN) -> int:
    async with aiohttp.ClientSession() as s, s.post(
        f"{gw.url}/webhooks/echo", json={"id": key, "user": "ann", "text": text}, headers={"X-Echo-Token": token}
    ) as resp:
        status = resp.status
    await gw.idle()
    return status


@pytest.mark.slow
async def test_no_configured_secret_reaches_the_logs(captured: io.StringIO, echo_plugin: Any) -> None:
    async with FakeSlack() as slack, FakeTelegram() as tg:
        channels = {
            "echo": {"type": "echo", "token": ECHO_TOKEN},
            "desk": {"type": "slack", "bot_token": slack.token, "signing_secret": fs.SECRET,
                     "api_base": slack.api_base},
            "tg": {"type": "telegram", "bot_token": tg.token, "secret_token": TG_SECRET, "api_base": tg.api_base},
        }
        tools = {"lookupOrder": {"url": "http://127.0.0.1:9/never", "headers": {"Authorization": TOOL_AUTH}}}
        async with running_gateway(channels, {"logging": {"level": "DEBUG", "format": "json"}},
                                      tools=tools, gateway={"admin_token": ADMIN}) as gw:
            secrets = secrets_of(gw.settings)
            assert {ECHO_TOKEN, ADMIN, TOOL_AUTH, TG_SECRET, fs.SECRET, slack.token, tg.token, "test-key"} <= set(
                secrets
            )
            configure_logging(gw.settings.logging, secrets, stream=captured, env={})
            # Every path that logs: answers, tools failing, agent failures, refusals, Bot API calls.
            assert await echo(gw, "hello", "1") == 200
            assert await echo(gw, "where is order 7?", "2") == 200  # the URL tool is unreachable
            gw.emulator.faults.fail_next(500, count=5)
            assert await echo(gw, "this one fails", "3") == 200
            assert await echo(gw, "forged", "4", token="guess") == 401
            update = text_update("hi from telegram", chat_id=5, user_id=5)
            assert (await post_update(f"{gw.url}/webhooks/tg", update, secret=TG_SECRET)).status == 200
            assert (await post_update(f"{gw.url}/webhooks/tg", update, secret="wrong")).status == 403
            body = slack_inbound.event_body(slack_inbound.message("hi"), event_id="Ev1")
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{gw.url}/webhooks/desk", data=body,
                                     headers=slack_inbound.signed_headers(body, secret="not-the-secret")) as resp:
                    assert resp.status in (401, 403)
                for token in (ADMIN, "wrong"):
                    async with http.get(f"{gw.url}/admin/identities",
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
                        assert resp.status in (200, 401)
            await gw.idle()
            # Even code that logs a secret outright (a careless plugin) gets it redacted.
            logging.getLogger("some.plugin").error("calling with %s and %s", tg.token, TOOL_AUTH)
    output = captured.getvalue()
    assert len(output.splitlines()) > 20
    leaked = [s for s in secrets if s in output]
    assert leaked == []
    assert f"calling with {REDACTED} and {REDACTED}" in output


async def test_json_turn_lines_carry_the_fields_and_no_bodies(captured: io.StringIO, echo_plugin: Any) -> None:
    # DEBUG shows the per-webhook "inbound" lines too (INFO keeps only the turn lines).
    async with running_gateway({"echo": {"type": "echo", "token": ECHO_TOKEN}},
                                  {"logging": {"format": "json", "level": "DEBUG"}}) as gw:
        configure_logging(gw.settings.logging, secrets_of(gw.settings), stream=captured, env={})
        await echo(gw, "my private question", "k1")
        await echo(gw, "/help", "k2")
    records = lines(captured)
    turns = [r for r in records if r.get("kind") == "turn"]
    assert [t["outcome"] for t in turns] == ["answered", "command"]
    first = turns[0]
    assert first["channel"] == "echo" and first["conversation"] == "echo:ann" and first["event_id"] == "echo:k1"
    assert first["level"] == "INFO" and first["logger"] == "gateway.turns" and first["duration_ms"] >= 0
    inbound = [r for r in records if r.get("kind") == "inbound"]
    assert [(r["channel"], r["outcome"]) for r in inbound] == [("echo", 200), ("echo", 200)]
    assert "my private question" not in captured.getvalue()


async def test_bodies_are_logged_only_when_asked(captured: io.StringIO, echo_plugin: Any) -> None:
    async with running_gateway({"echo": {"type": "echo", "token": ECHO_TOKEN}},
                                  {"logging": {"format": "json", "log_bodies": True}}) as gw:
        configure_logging(gw.settings.logging, stream=captured, env={})
        await echo(gw, "my private question", "k1")
    [turn] = [r for r in lines(captured) if r.get("kind") == "turn"]
    assert turn["text"] == "my private question"


def test_level_and_format_come_from_config_then_environment(captured: io.StringIO) -> None:
    settings = LoggingSettings(level="warning", format="text")
    configure_logging(settings, stream=captured, env={})
    log = logging.getLogger("switchboard.test")
    log.info("hidden")
    with log_context(conversation="sms:+1555"):
        log.warning("shown %s", "here", extra={"outcome": "ok", "duration_ms": 1.5})
    text = captured.getvalue()
    assert "hidden" not in text
    assert "WARNING switchboard.test: shown here conversation=sms:+1555 outcome=ok duration_ms=1.5" in text

    configure_logging(settings, stream=captured, env={"SWITCHBOARD_LOG_LEVEL": "debug",
                                                      "SWITCHBOARD_LOG_FORMAT": "json"})
    log.debug("now visible")
    assert json.loads(captured.getvalue().splitlines()[-1])["message"] == "now visible"


def test_secrets_are_collected_from_every_section() -> None:
    settings = parse_settings({
        "gateway": {"admin_token": "A1", "store": "redis://:p%40ss@127.0.0.1:6379/0"},
        "agent": {"api_key": "K1"},
        "channels": {"x": {"type": "email", "password": "P1", "username": "bob", "imap_host": "h"},
                     "y": {"type": "twilio-sms", "auth_token": "T1", "account_sid": "AC1"}},
        "tools": {"t": {"url": "http://127.0.0.1/t", "headers": {"X-Api-Key": "H1"}}},
    }, env={})
    found = set(secrets_of(settings))
    assert {"A1", "K1", "P1", "T1", "H1", "p@ss", "p%40ss"} <= found
    assert not {"bob", "h", "AC1"} & found
