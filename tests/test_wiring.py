"""How the pieces are put together: plugin subcommands and store schemes, the handoff desk, and
what a channel may ask of the core before the app has started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import build_app
from gateway.cli import main
from gateway.config import parse_settings
from gateway.errors import ConfigError
from gateway.plugins import load_store
from gateway.services import NotStarted
from tests.fakes.slack import SECRET as SLACK_SECRET
from tests.fakes.telegram import SECRET, FakeTelegram


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


SLACK = {"type": "slack", "bot_token": "xoxb-1", "signing_secret": SLACK_SECRET}
TELEGRAM = {"type": "telegram", "bot_token": "123:abc", "secret_token": SECRET}


# -- plugin subcommands and store schemes ---------------------------------------------------------
async def test_telegram_set_webhook_is_a_plugin_subcommand(tmp_path: Path, tg: FakeTelegram,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text(f"""
[gateway]
public_url = "https://bot.example.com"
store = "memory://"

[channels.tg]
type = "telegram"
bot_token = "{tg.token}"
secret_token = "{SECRET}"
api_base = "{tg.api_base}"
""")
    code = await asyncio.to_thread(main, ["telegram", "set-webhook", "tg", "--config", str(config)])
    assert code == 0
    assert capsys.readouterr().out.strip() == "webhook set: https://bot.example.com/webhooks/tg"
    assert tg.webhook["url"] == "https://bot.example.com/webhooks/tg" and tg.webhook["secret_token"] == SECRET


def test_set_webhook_for_a_channel_that_is_not_telegram_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text('[channels.web]\ntype = "web"\n')
    assert main(["telegram", "set-webhook", "web", "--config", str(config)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"switchboard: channels.web: no telegram channel of that name in {config}"
    )


def test_plugins_lists_the_commands_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    listing = capsys.readouterr().out
    assert "commands:" in listing and "channels.telegram.cli:command" in listing
    assert "rediss" in listing and "unix" in listing


@pytest.mark.parametrize("url", ["rediss://:pw@redis.example:6380/0", "unix:///run/redis.sock?db=2"])
def test_rediss_and_unix_urls_open_the_redis_store(url: str) -> None:
    from adapters.stores.redis import RedisStore

    assert isinstance(load_store(url), RedisStore)


# -- the handoff desk ----------------------------------------------------------------------------
def _settings(handoff: dict[str, Any], **channels: dict[str, Any]) -> Any:
    return parse_settings({"channels": channels, "handoff": handoff}, env={})


def test_the_desk_is_named_by_desk_or_by_type_channel() -> None:
    by_type = _settings({"slack_channel": "support", "support_channel_id": "C1"}, support=SLACK)
    by_name = _settings({"desk": "support", "support_channel_id": "C1"}, support=SLACK)
    assert by_type.handoff == by_name.handoff and by_type.handoff.desk == "support"


@pytest.mark.parametrize(("handoff", "message"), [
    ({"slack_channel": "nope", "support_channel_id": "C1"},
     "handoff.slack_channel: there is no [channels.nope] section"),
    ({"slack_channel": "tg", "support_channel_id": "C1"}, "handoff.slack_channel: channels.tg is not a slack channel"),
    ({"desk": "nope", "support_channel_id": "C1"}, "handoff.desk: there is no [channels.nope] section"),
    ({"slack_channel": "support"}, "handoff.support_channel_id: required when a desk channel is set"),
])
def test_desk_mistakes_name_the_key(handoff: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(handoff, support=SLACK, tg=TELEGRAM)
    assert str(caught.value) == message


def test_a_channel_that_cannot_be_a_desk_is_refused_when_the_app_is_built() -> None:
    settings = _settings({"telegram_channel": "tg", "support_channel_id": "C1"}, tg=TELEGRAM)
    with pytest.raises(ConfigError, match=r"^handoff\.desk: channels\.tg \(telegram\) cannot be a support desk$"):
        build_app(settings)


# -- before the app starts -----------------------------------------------------------------------
async def test_channels_asking_for_resources_before_start_get_a_clear_error() -> None:
    from gateway.services import CHANNELS

    app = build_app(parse_settings({"channels": {"web": {"type": "web"}}}, env={}))
    services = app[CHANNELS]["web"].services
    assert services.settings.channels == {"web": {"type": "web"}}
    with pytest.raises(NotStarted, match="store is not open"):
        _ = services.store
    with pytest.raises(NotStarted, match="dispatcher is not open"):
        await services.accept([])
