"""Config mistakes are one readable line that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import build_app
from gateway.config import load_settings, parse_settings
from gateway.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "switchboard.toml"
    p.write_text(text)
    return p


def test_env_references_are_resolved(tmp_path: Path) -> None:
    p = write(tmp_path, '[agent]\napi_key = "${KEY}"\nagent_id = "a-${SUFFIX}"\n')
    settings = load_settings(p, env={"KEY": "sk-1", "SUFFIX": "x"})
    assert settings.agent.api_key == "sk-1"
    assert settings.agent.agent_id == "a-x"


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('[agent]\napi_key = "${NOPE}"\n', {}, "agent.api_key: environment variable NOPE is not set"),
        ('[gateway]\npublic_url = "bot.example.com"\n', {}, "gateway.public_url"),
        ('[gateway]\nport = "eighty"\n', {}, "gateway.port"),
        ('[gateway]\nprot = 8080\n', {}, "gateway.prot: unknown key"),
        ('[channels.web]\nallowed_origins = []\n', {}, "channels.web.type: required key is missing"),
        ('[channels."bad name"]\ntype = "web"\n', {}, "channels.bad name: a channel name is"),
        ('[channels.Web]\ntype = "web"\n[channels.web]\ntype = "web"\n', {}, "duplicate webhook name"),
        ('[tools.lookupOrder]\nurl = "ftp://x"\n', {}, "tools.lookupOrder.url"),
        ("[gateway\n", {}, "not valid TOML"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml), env=env)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_unknown_channel_type_names_the_key_and_the_known_types() -> None:
    settings = parse_settings({"channels": {"support": {"type": "pager"}}}, env={})
    with pytest.raises(ConfigError) as info:
        build_app(settings)
    assert "channels.support.type: unknown channel type 'pager'" in str(info.value)
    assert "slack" in str(info.value)


def test_missing_required_channel_key_is_named() -> None:
    settings = parse_settings({"channels": {"sms": {"type": "twilio-sms"}}}, env={})
    with pytest.raises(ConfigError, match=r"^channels\.sms\.\w+: required key is missing$"):
        build_app(settings)


def test_unknown_channel_key_is_named() -> None:
    settings = parse_settings({"channels": {"chat": {"type": "web", "alowed_origins": []}}}, env={})
    with pytest.raises(ConfigError, match=r"^channels\.chat\.alowed_origins: unknown key$"):
        build_app(settings)


def test_unknown_store_scheme_is_a_config_error() -> None:
    settings = parse_settings({"gateway": {"store": "mongodb://x"}}, env={})
    with pytest.raises(ConfigError, match=r"gateway\.store: unknown store scheme"):
        build_app(settings)
