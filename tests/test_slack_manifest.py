"""The shipped Slack app manifest, as ``switchboard slack manifest NAME`` prints it and the docs show it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from channels.slack.manifest import shipped_manifest
from gateway.cli import main

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
[gateway]
public_url = "https://bot.example.com/"
[channels.desk]
type = "slack"
bot_token = "xoxb-1"
signing_secret = "s"
[channels.sock]
type = "slack"
bot_token = "xoxb-1"
mode = "socket"
app_token = "xapp-1"
[channels.vendor]
type = "slack"
client_id = "1.2"
client_secret = "secret"
signing_secret = "s"
scopes = ["chat:write", "assistant:write", "im:history"]
[channels.vendor.assistant]
prompts = [{ title = "Orders", message = "Where is my order?" }]
[channels.web]
type = "web"
"""


def printed(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> dict[str, Any]:
    config = tmp_path / "switchboard.toml"
    config.write_text(CONFIG)
    assert main(["slack", "manifest", name, "--config", str(config)]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_the_manifest_asks_for_the_assistant_scopes_and_events() -> None:
    manifest = shipped_manifest()
    assert "assistant:write" in manifest["oauth_config"]["scopes"]["bot"]
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    for event in ("assistant_thread_started", "assistant_thread_context_changed", "message.im", "app_mention",
                  "app_uninstalled", "tokens_revoked"):
        assert event in events
    assert "assistant_view" in manifest["features"]


def test_printed_for_one_workspace_with_this_gateways_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = printed(tmp_path, capsys, "desk")
    assert manifest["settings"]["event_subscriptions"]["request_url"] == "https://bot.example.com/webhooks/desk"
    assert manifest["settings"]["interactivity"]["request_url"] == "https://bot.example.com/webhooks/desk"
    assert "redirect_urls" not in manifest["oauth_config"]
    prompts = manifest["features"]["assistant_view"]["suggested_prompts"]
    assert [p["title"] for p in prompts] == ["What can you do?", "Get started", "Talk to a person"]


def test_printed_for_socket_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = printed(tmp_path, capsys, "sock")
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in manifest["settings"]["event_subscriptions"]


def test_printed_for_many_workspaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = printed(tmp_path, capsys, "vendor")
    assert manifest["oauth_config"]["redirect_urls"] == ["https://bot.example.com/webhooks/vendor/oauth_redirect"]
    assert manifest["oauth_config"]["scopes"]["bot"] == ["chat:write", "assistant:write", "im:history"]
    assert manifest["features"]["assistant_view"]["suggested_prompts"] == [
        {"title": "Orders", "message": "Where is my order?"}
    ]
    assert "secret" not in json.dumps(manifest)


def test_a_name_that_is_not_a_slack_channel_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text(CONFIG)
    assert main(["slack", "manifest", "web", "--config", str(config)]) == 1
    assert capsys.readouterr().err.strip() == f"switchboard: channels.web: no slack channel of that name in {config}"


def test_the_setup_page_shows_the_shipped_manifest() -> None:
    page = (ROOT / "docs/setup/slack.md").read_text()
    [block] = re.findall(r"```yaml\n(.*?)```", page, re.S)
    assert yaml.safe_load(block) == shipped_manifest()
