"""The command line as a user meets it: real subprocesses, one-line errors, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.cli import free_port
from tests.conftest import PLUGINS_DIR

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ENV = {
    "SWITCHBOARD_PUBLIC_URL": "https://bot.example.com",
    "SWITCHBOARD_STORE": "memory://",
    "CHATBASE_API_KEY": "sk-example-secret-key",
    "CHATBASE_AGENT_ID": "agent-1",
    "SLACK_BOT_TOKEN": "xoxb-secret-slack",
    "SLACK_SIGNING_SECRET": "slack-signing-secret",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "twilio-secret-token",
    "TELEGRAM_BOT_TOKEN": "123456:telegram-secret",
    "TELEGRAM_SECRET_TOKEN": "tg_secret_token",
    "TEAMS_APP_ID": "11111111-2222-3333-4444-555555555555",
    "TEAMS_APP_PASSWORD": "teams-app-secret",
    "META_PAGE_ACCESS_TOKEN": "meta-page-secret",
    "META_APP_SECRET": "meta-app-secret",
    "META_VERIFY_TOKEN": "meta-verify-secret",
    "WHATSAPP_ACCESS_TOKEN": "EAAwhatsapp-secret-token",
    "SUPPORT_MAIL_PASSWORD": "mail-secret-password",
}


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60
    )


@pytest.mark.parametrize("command", ["serve", "demo", "check", "plugins", "emulator", "telegram", "teams"])
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: switchboard " + command)


def test_example_config_passes_check_and_prints_webhook_urls_without_secrets() -> None:
    result = run("check", "--config", str(ROOT / "config/switchboard.example.toml"), env=EXAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("slack", "sms", "whatsapp", "phone", "telegram", "teams", "messenger", "instagram",
                 "whatsapp-cloud"):
        assert f"https://bot.example.com/webhooks/{name}" in out
    assert "https://bot.example.com/chat/web/" in out
    assert "WhatsApp number id 106540352242922 via the Cloud API" in out
    for key, value in EXAMPLE_ENV.items():
        if "SECRET" in key or "TOKEN" in key or "PASSWORD" in key or key == "CHATBASE_API_KEY":
            assert value not in out + result.stderr, key


def test_check_reports_each_problem_on_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[agent]\napi_key = "k"\nagent_id = "a"\n'
        '[channels.a]\ntype = "pager"\n'
        '[channels.b]\ntype = "web"\nallowed_origin = []\n'
    )
    result = run("check", "--config", str(cfg))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "switchboard: channels.a.type: unknown channel type 'pager' "
        "(known: email, instagram, messenger, slack, teams, telegram, twilio-sms, twilio-voice, twilio-whatsapp, "
        "web, whatsapp)",
        "switchboard: channels.b.allowed_origin: unknown key",
    ]
    assert "Traceback" not in result.stderr


def test_missing_environment_variable_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[agent]\napi_key = "${SB_TEST_UNSET}"\n')
    result = run("serve", "--config", str(cfg))
    assert result.returncode == 1
    assert result.stderr.strip() == "switchboard: agent.api_key: environment variable SB_TEST_UNSET is not set"


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run("serve", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 1
    assert result.stderr.strip().endswith("absent.toml: config file not found")


def test_plugins_lists_builtins_and_third_party() -> None:
    result = run("plugins", env={"PYTHONPATH": PLUGINS_DIR})
    assert result.returncode == 0
    assert "echo" in result.stdout and "sb_echo:EchoChannel  [sb-echo]" in result.stdout
    assert "shout" in result.stdout and "getCurrentTime" in result.stdout
    assert "redis" in result.stdout and "sqlite" in result.stdout and "memory" in result.stdout
    assert "whatsapp           channels.meta:WhatsAppChannel  [switchboard]" in result.stdout
    assert "channels.teams:TeamsChannel" in result.stdout and "channels.teams.cli:command" in result.stdout


async def wait_for_line(proc: asyncio.subprocess.Process, needle: str, timeout: float = 20) -> str:
    assert proc.stdout is not None
    seen = ""
    async with asyncio.timeout(timeout):
        while needle not in seen:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"process ended before printing {needle!r}: {seen}")
            seen += line.decode()
    return seen


@pytest.fixture
async def emulator_url() -> AsyncIterator[str]:
    from adapters.emulator import Emulator

    async with Emulator().serve("127.0.0.1", 0) as url:
        yield url


async def test_serve_routes_to_an_out_of_tree_channel_plugin(tmp_path: Path, emulator_url: str) -> None:
    port = free_port()
    out = tmp_path / "sent.jsonl"
    cfg = tmp_path / "switchboard.toml"
    cfg.write_text(
        f'[gateway]\nhost = "127.0.0.1"\nport = {port}\npublic_url = "http://127.0.0.1:{port}"\n'
        f'store = "sqlite:///{tmp_path}/state.db"\n'
        f'[agent]\napi_base = "{emulator_url}"\napi_key = "k"\nagent_id = "a"\n'
        '[channels.partner]\ntype = "echo"\ntoken = "${ECHO_TOKEN}"\n'
    )
    env = {**os.environ, "PYTHONPATH": PLUGINS_DIR, "ECHO_OUT": str(out), "ECHO_TOKEN": "t0k"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path,
        start_new_session=True,
    )
    try:
        await wait_for_line(proc, "listening on")
        body = {"id": "1", "user": "zoe", "text": 'call tool shout {"text": "plugged in"}'}
        async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/webhooks/partner", json=body,
                          headers={"X-Echo-Token": "t0k"}) as r:
            assert (r.status, await r.text()) == (200, "queued")
        async with asyncio.timeout(15):
            while not out.exists():
                await asyncio.sleep(0.05)
        record: dict[str, Any] = json.loads(out.read_text().splitlines()[0])
        assert record["text"] == 'Tool shout returned: {"channel": "partner", "shout": "PLUGGED IN"}'
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0  # SIGTERM is a graceful shutdown


async def test_demo_serves_the_web_chat_and_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBASE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path,
        start_new_session=True,
    )
    try:
        banner = await wait_for_line(proc, "/chat/web/")
        assert "emulator" in banner
        assert f"http://127.0.0.1:{port}/chat/web/" in banner
        assert f"Open http://127.0.0.1:{port}/demo/" in banner  # the demo shop with the chat bubble
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/chat/web/") as r:
                assert r.status == 200 and "<html" in (await r.text()).lower()
            async with s.get(f"http://127.0.0.1:{port}/demo/") as r:
                assert r.status == 200 and '<script src="/chat/web/embed.js"' in await r.text()
            async with s.post(f"http://127.0.0.1:{port}/chat/web/messages",
                              json={"sessionId": "demo-session-1", "message": "hello"}) as r:
                stream = await r.text()
        deltas = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {")]
        text = "".join(d.get("delta", "") for d in deltas if d["type"] == "text-delta")
        assert text == 'You said: "hello". This is message 1 of this conversation.'
        async with aiohttp.ClientSession() as s, s.post(
            f"http://127.0.0.1:{port}/chat/web/messages",
            json={"sessionId": "demo-session-1", "message": "Where is order 1234?"},
        ) as r:
            stream = await r.text()
        deltas = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {")]
        text = "".join(d.get("delta", "") for d in deltas if d["type"] == "text-delta")
        assert text.startswith("Let me check order 1234.")
        assert 'Here is what I found for order 1234: {"eta": "' in text and '"status": "' in text
        assert stream.rstrip().endswith("data: [DONE]")
        assert (tmp_path / ".switchboard" / "state.db").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
