"""No configured secret ever shows up in logs, command output or HTTP answers.

A realistic deployment: ``switchboard serve`` as a real process at DEBUG (text and JSON logs),
every channel configured with a distinctive secret, half of them from the environment and half
from ``file:`` references; traffic through every channel, forged requests, platform and agent
failures, an unreachable mail server, a platform API that disappears; ``switchboard check``
(also with a broken config) and ``switchboard plugins``. Then every byte the gateway wrote or
answered is searched for every secret, and for the forms a secret leaks in (URL-quoted, and the
base64 of Twilio's Basic credentials).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import pytest

from adapters.emulator import Emulator
from gateway.cli import free_port
from switchboard.testing import wait_until
from switchboard.testing.whatsapp import PHONE_NUMBER_ID, WINDOW_CLOSED_ERROR, FakeWhatsApp, status
from switchboard.testing.whatsapp import payload as wa_payload
from switchboard.testing.whatsapp import text as wa_text
from tests.conftest import PLUGINS_DIR
from tests.fakes.meta import FakeGraph, payload, text_item
from tests.fakes.meta import signature as meta_signature
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_inbound import event_body, message, signed_headers
from tests.fakes.telegram import FakeTelegram, text_update
from tests.fakes.twilio import ACCOUNT_SID, FakeTwilio, call_params, message_params
from tests.processes import GatewayProcess, write_config

BOT_ID = 7000001


def _secret(name: str) -> str:
    return f"sb-{name}-{secrets.token_hex(12)}"


@pytest.fixture
def values() -> dict[str, str]:
    """One distinctive value per configured secret."""
    return {
        "CHATBASE_API_KEY": _secret("chatbase"),
        "ADMIN_TOKEN": _secret("admin"),
        "SLACK_BOT_TOKEN": "xoxb-" + _secret("slackbot"),
        "SLACK_SIGNING_SECRET": _secret("slacksigning"),
        "TWILIO_AUTH_TOKEN": _secret("twilio"),
        "TELEGRAM_TOKEN": f"{BOT_ID}:" + _secret("telegram"),
        "TELEGRAM_SECRET": _secret("tgsecret"),
        "META_PAGE_TOKEN": _secret("metapage"),
        "META_APP_SECRET": _secret("metaapp"),
        "META_VERIFY_TOKEN": _secret("metaverify"),
        "IG_PAGE_TOKEN": _secret("igpage"),
        "WHATSAPP_TOKEN": "EAA" + _secret("whatsapp"),
        "EMAIL_PASSWORD": _secret("mailpw"),
        "REDIS_PASSWORD": _secret("redispw"),
    }


def leak_forms(values: dict[str, str]) -> dict[str, str]:
    """Every string whose appearance would be a leak, named after the secret it reveals."""
    forms: dict[str, str] = {}
    for name, value in values.items():
        core = value.split(":", 1)[-1]  # a Telegram token's bot id is public, the rest is not
        forms[name] = core
        forms[f"{name} (URL-quoted)"] = quote(core, safe="")
    basic = base64.b64encode(f"{ACCOUNT_SID}:{values['TWILIO_AUTH_TOKEN']}".encode()).decode()
    forms["TWILIO_AUTH_TOKEN (Basic credentials)"] = basic
    return forms


def config_sections(values: dict[str, str], port: int, fakes: dict[str, Any], emulator: str,
                    secret_dir: Path, store: str = "memory://") -> dict[str, dict[str, Any]]:
    """Half the secrets as ``${NAME}``, half as ``file:`` references."""
    ref: dict[str, str] = {}
    for i, name in enumerate(sorted(values)):
        if i % 2:
            (secret_dir / name).write_text(values[name] + "\n")
            ref[name] = f"file:{secret_dir / name}"
        else:
            ref[name] = "${" + name + "}"
    twilio = {"account_sid": ACCOUNT_SID, "auth_token": ref["TWILIO_AUTH_TOKEN"]}
    return {
        "gateway": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}", "store": store,
                    "admin_token": ref["ADMIN_TOKEN"], "shutdown_grace": 1},
        "agent": {"api_base": emulator, "api_key": ref["CHATBASE_API_KEY"], "agent_id": "agent-1", "timeout": 5,
                  "max_attempts": 1},
        "channels.slack": {"type": "slack", "bot_token": ref["SLACK_BOT_TOKEN"],
                           "signing_secret": ref["SLACK_SIGNING_SECRET"], "api_base": fakes["slack"].api_base},
        "channels.sms": {"type": "twilio-sms", "from": "+15557654321", "api_base": fakes["twilio"].url, **twilio},
        "channels.wa": {"type": "twilio-whatsapp", "from": "whatsapp:+14155238886", "api_base": fakes["twilio"].url,
                        **twilio},
        "channels.phone": {"type": "twilio-voice", "answer_budget": 3, **twilio},
        "channels.tg": {"type": "telegram", "bot_token": ref["TELEGRAM_TOKEN"], "secret_token": ref["TELEGRAM_SECRET"],
                        "api_base": fakes["telegram"].api_base},
        "channels.fb": {"type": "messenger", "page_access_token": ref["META_PAGE_TOKEN"],
                        "app_secret": ref["META_APP_SECRET"], "verify_token": ref["META_VERIFY_TOKEN"],
                        "api_base": fakes["messenger"].api_base},
        "channels.ig": {"type": "instagram", "page_access_token": ref["IG_PAGE_TOKEN"],
                        "app_secret": ref["META_APP_SECRET"], "verify_token": ref["META_VERIFY_TOKEN"],
                        "api_base": fakes["instagram"].api_base},
        "channels.wac": {"type": "whatsapp", "phone_number_id": PHONE_NUMBER_ID,
                         "access_token": ref["WHATSAPP_TOKEN"], "app_secret": ref["META_APP_SECRET"],
                         "verify_token": ref["META_VERIFY_TOKEN"], "api_base": fakes["whatsapp"].api_base},
        "channels.mail": {"type": "email", "imap_host": "127.0.0.1", "imap_port": free_port(),
                          "imap_security": "none", "smtp_host": "127.0.0.1", "smtp_port": free_port(),
                          "smtp_security": "none", "username": "bot", "password": ref["EMAIL_PASSWORD"],
                          "address": "bot@example.test", "reconnect_max": 1},
        "channels.web": {"type": "web"},
    }


class Traffic:
    """Requests to the gateway; every answer (status line, headers, body) is kept for the scan."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.answers: list[str] = []

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        async with self.http.post(self.base + path, data=body, headers=headers) as resp:
            await self._keep(resp)
            return resp.status

    async def get(self, path: str, headers: dict[str, str] | None = None) -> int:
        async with self.http.get(self.base + path, headers=headers or {}) as resp:
            await self._keep(resp)
            return resp.status

    async def _keep(self, resp: aiohttp.ClientResponse) -> None:
        self.answers.append(f"{resp.status} {dict(resp.headers)}\n{(await resp.read()).decode(errors='replace')}")


#: what the log must show once the failures in ``drive`` were met (each error path taken and logged)
FAILURES = ("AUTH_INVALID_API_KEY", "20003", "invalid_auth", "code 190", "Telegram API unavailable",
            "IMAP trouble on mail", "WhatsApp Cloud API 401 (code 190)", "Cloud API error 131047")


async def drive(traffic: Traffic, values: dict[str, str], fakes: dict[str, Any], emulator: Emulator,
                port: int, log: Callable[[], str]) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    json_type = {"Content-Type": "application/json"}

    def twilio_sig(path: str, params: dict[str, str]) -> dict[str, str]:
        return {**form, "X-Twilio-Signature": fakes["twilio"].sign(f"http://127.0.0.1:{port}{path}", params)}

    # Slack: a DM, and a forged one.
    body = event_body(message("hello slack", user="U0000042"), event_id="EvScan1")
    slack_signed = signed_headers(body, secret=values["SLACK_SIGNING_SECRET"])
    assert await traffic.post("/webhooks/slack", body, slack_signed) == 200
    assert await traffic.post("/webhooks/slack", body, signed_headers(body, secret="guess")) == 401
    # Twilio SMS and WhatsApp, a voice call with one turn, and a forged SMS.
    for path, sender in (("/webhooks/sms", "+15551230001"), ("/webhooks/wa", "whatsapp:+15551230002")):
        params = message_params(f"hello {path}", sender, "+15557654321", f"SMscan{len(path)}")
        assert await traffic.post(path, urlencode(params).encode(), twilio_sig(path, params)) == 200
    params = message_params("forged", "+15551230003", "+15557654321", "SMforged")
    forged = {**form, "X-Twilio-Signature": "bm8="}
    assert await traffic.post("/webhooks/sms", urlencode(params).encode(), forged) == 403
    call = call_params("CAscan0000000000000000000000000001")
    assert await traffic.post("/webhooks/phone", urlencode(call).encode(), twilio_sig("/webhooks/phone", call)) == 200
    gather = {**call, "SpeechResult": "what time is it", "Confidence": "0.9"}
    path = "/webhooks/phone/gather?step=1"
    assert await traffic.post(path, urlencode(gather).encode(), twilio_sig(path, gather)) == 200
    # Telegram: an update, and one with a wrong secret.
    update = json.dumps(text_update("hello telegram", chat_id=77, user_id=77)).encode()
    tg = {**json_type, "X-Telegram-Bot-Api-Secret-Token": values["TELEGRAM_SECRET"]}
    assert await traffic.post("/webhooks/tg", update, tg) == 200
    assert await traffic.post("/webhooks/tg", update, {**tg, "X-Telegram-Bot-Api-Secret-Token": "nope"}) == 403
    # Messenger and Instagram: the handshake (right and wrong token), messages, a forged one.
    for name, obj in (("fb", "page"), ("ig", "instagram")):
        hub = {"hub.mode": "subscribe", "hub.verify_token": values["META_VERIFY_TOKEN"], "hub.challenge": "c-42"}
        assert await traffic.get(f"/webhooks/{name}?{urlencode(hub)}") == 200
        assert await traffic.get(f"/webhooks/{name}?{urlencode({**hub, 'hub.verify_token': 'x'})}") == 403
        meta_body = payload([text_item(f"hello {name}", sender=f"99{len(name)}", mid=f"m.scan.{name}")], obj=obj)
        signed = {**json_type, "X-Hub-Signature-256": meta_signature(meta_body, values["META_APP_SECRET"])}
        assert await traffic.post(f"/webhooks/{name}", meta_body, signed) == 200
        assert await traffic.post(f"/webhooks/{name}", meta_body + b" ", signed) == 403
    # WhatsApp Cloud API: the handshake, a message, a forged one, a failed status.
    hub = {"hub.mode": "subscribe", "hub.verify_token": values["META_VERIFY_TOKEN"], "hub.challenge": "c-43"}
    assert await traffic.get(f"/webhooks/wac?{urlencode(hub)}") == 200
    wa_body = wa_payload([wa_text("hello whatsapp")])
    signed = {**json_type, "X-Hub-Signature-256": meta_signature(wa_body, values["META_APP_SECRET"])}
    assert await traffic.post("/webhooks/wac", wa_body, signed) == 200
    assert await traffic.post("/webhooks/wac", wa_body + b" ", signed) == 401
    wa_body = wa_payload(statuses=[status("wamid.scan", "failed", error=WINDOW_CLOSED_ERROR)])
    signed = {**json_type, "X-Hub-Signature-256": meta_signature(wa_body, values["META_APP_SECRET"])}
    assert await traffic.post("/webhooks/wac", wa_body, signed) == 200
    # Web chat and the admin API (with and without the token).
    chat = json.dumps({"sessionId": "scan-session-1", "message": "hello web"}).encode()
    assert await traffic.post("/chat/web/messages", chat, json_type) == 200
    assert await traffic.get("/admin/identities", {"Authorization": f"Bearer {values['ADMIN_TOKEN']}"}) in (200, 404)
    assert await traffic.get("/admin/identities", {"Authorization": "Bearer guess"}) in (401, 404)
    # The answers go out in the background; the platforms' faults below are for later messages.
    await wait_until(lambda: len(fakes["twilio"].messages) >= 2 and fakes["slack"].calls_to("chat.postMessage")
                     and fakes["telegram"].messages and fakes["messenger"].calls and fakes["instagram"].calls
                     and fakes["whatsapp"].sent(),
                     "the first answers on every channel", 30)
    # Failures: the agent refuses the key, the platforms refuse ours, Telegram's API disappears.
    emulator.faults.fail_next(401, count=3)
    fakes["twilio"].fail_next(401, 20003, count=3)
    fakes["messenger"].fail_next(400, 190, message="Invalid OAuth access token")
    fakes["whatsapp"].fail_next(401, 190, message="Invalid OAuth access token - Cannot parse access token")
    fakes["slack"].fail_next("chat.postMessage", status=200, error="invalid_auth", count=3)
    params = message_params("during the outage", "+15551230009", "+15557654321", "SMscan-fail")
    assert await traffic.post("/webhooks/sms", urlencode(params).encode(), twilio_sig("/webhooks/sms", params)) == 200
    await wait_until(lambda: "AUTH_INVALID_API_KEY" in log(), "the agent's refusal in the log", 30)
    emulator.faults.clear()
    params = message_params("platform refuses", "+15551230010", "+15557654321", "SMscan-fail2")
    assert await traffic.post("/webhooks/sms", urlencode(params).encode(), twilio_sig("/webhooks/sms", params)) == 200
    meta_body = payload([text_item("graph refuses", sender="9911", mid="m.scan.fail")])
    signed = {**json_type, "X-Hub-Signature-256": meta_signature(meta_body, values["META_APP_SECRET"])}
    assert await traffic.post("/webhooks/fb", meta_body, signed) == 200
    wa_body = wa_payload([wa_text("cloud api refuses")])
    signed = {**json_type, "X-Hub-Signature-256": meta_signature(wa_body, values["META_APP_SECRET"])}
    assert await traffic.post("/webhooks/wac", wa_body, signed) == 200
    body = event_body(message("slack refuses", user="U0000043"), event_id="EvScan2")
    slack_signed = signed_headers(body, secret=values["SLACK_SIGNING_SECRET"])
    assert await traffic.post("/webhooks/slack", body, slack_signed) == 200
    await fakes["telegram"].__aexit__(None, None, None)  # Telegram's API is gone
    update = json.dumps(text_update("telegram is down", chat_id=78, user_id=78)).encode()
    assert await traffic.post("/webhooks/tg", update, tg) == 200
    # Retries, failures and the mail poller's reconnects get logged.
    await wait_until(lambda: all(failure in log() for failure in FAILURES), "every failure in the log", 30)


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": PLUGINS_DIR, **env}, cwd=cwd, check=False)
    return f"$ switchboard {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_appears_in_any_log_output_or_answer(
    tmp_path: Path, values: dict[str, str], log_format: str
) -> None:
    emulator = Emulator()
    async with emulator.serve("127.0.0.1", 0) as api, FakeSlack(token=values["SLACK_BOT_TOKEN"]) as slack, \
            FakeTwilio(auth_token=values["TWILIO_AUTH_TOKEN"]) as twilio, \
            FakeGraph(token=values["META_PAGE_TOKEN"]) as messenger, \
            FakeGraph(token=values["IG_PAGE_TOKEN"], max_text=1000) as instagram, \
            FakeWhatsApp(token=values["WHATSAPP_TOKEN"]) as whatsapp:
        telegram = FakeTelegram(token=values["TELEGRAM_TOKEN"])
        await telegram.__aenter__()
        fakes = {"slack": slack, "twilio": twilio, "telegram": telegram, "messenger": messenger,
                 "instagram": instagram, "whatsapp": whatsapp}
        port = free_port()
        secret_dir = tmp_path / "secrets"
        secret_dir.mkdir()
        config = write_config(tmp_path / "switchboard.toml",
                              config_sections(values, port, fakes, api, secret_dir))
        # A Redis store with a password, and a broken channel next to good ones: still nothing leaks.
        broken = config_sections(values, port, fakes, api, secret_dir,
                                 store="redis://:${REDIS_PASSWORD}@127.0.0.1:6399/0")
        broken["channels.tg"]["secret_token"] = "not allowed!"
        broken["channels.slack"]["unknown_key"] = "${SLACK_SIGNING_SECRET}"
        bad = write_config(tmp_path / "broken.toml", broken)
        env = {**values, "SWITCHBOARD_LOG_LEVEL": "DEBUG", "SWITCHBOARD_LOG_FORMAT": log_format}
        process = GatewayProcess(config, port, env=env)
        await process.start()
        try:
            async with aiohttp.ClientSession() as http:
                traffic = Traffic(http, process.url)
                await drive(traffic, values, fakes, emulator, port, process.read_log)
        finally:
            await process.stop()
        outputs = {"serve log": process.read_log(), "HTTP answers": "\n".join(traffic.answers)}
        outputs["check"] = run_cli(["check", "--config", str(config)], env, tmp_path)
        outputs["plugins"] = run_cli(["plugins"], env, tmp_path)
        outputs["check (broken)"] = run_cli(["check", "--config", str(bad)], env, tmp_path)
        outputs["serve (broken)"] = run_cli(["serve", "--config", str(bad)], env, tmp_path)
    # The scenario really ran: answers went out on every channel, the failures were logged.
    assert "127.0.0.1" in outputs["check"] and "channel tg (telegram)" in outputs["check"]
    assert "-> 1" in outputs["check (broken)"] and "redis://:***@127.0.0.1:6399/0" in outputs["check (broken)"]
    assert "-> 1" in outputs["serve (broken)"]
    log = outputs["serve log"]
    for failure in FAILURES:
        assert failure in log, failure  # each error path was taken, and logged
    assert twilio.messages and slack.calls_to("chat.postMessage") and messenger.calls and instagram.calls
    assert whatsapp.sent() and whatsapp.reads()
    leaks = [f"{name} in {where}: " + " | ".join(line[:300] for line in text.splitlines() if form in line)[:1500]
             for where, text in outputs.items() for name, form in leak_forms(values).items() if form in text]
    assert not leaks, "\n".join(leaks)
