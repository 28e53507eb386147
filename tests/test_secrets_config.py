"""Secrets in the config: ``${NAME}`` from the environment and ``file:`` references to secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_settings
from gateway.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "switchboard.toml"
    p.write_text(text)
    return p


def test_a_file_reference_is_the_stripped_content_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "chatbase").write_text("  cb-key-from-a-file\n\n")
    cfg = write(tmp_path, f'[agent]\napi_key = "file:{tmp_path}/chatbase"\nagent_id = "a1"\n')
    assert load_settings(cfg, env={}).agent.api_key == "cb-key-from-a-file"


def test_a_file_reference_may_use_an_environment_variable_in_its_path(tmp_path: Path) -> None:
    # systemd hands credentials over in $CREDENTIALS_DIRECTORY.
    (tmp_path / "slack-secret").write_text("s3cret\n")
    cfg = write(tmp_path, '[channels.slack]\ntype = "slack"\n'
                          'signing_secret = "file:${CREDENTIALS_DIRECTORY}/slack-secret"\n')
    settings = load_settings(cfg, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.channels["slack"]["signing_secret"] == "s3cret"


def test_file_content_is_taken_literally_not_interpolated_again(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("${HOME}file:/etc/passwd")
    cfg = write(tmp_path, f'[gateway]\nadmin_token = "file:{tmp_path}/token"\n')
    assert load_settings(cfg, env={}).gateway.admin_token == "${HOME}file:/etc/passwd"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "agent.api_key: cannot read secret file {dir}/secret (No such file or directory)"),
        ("directory", "agent.api_key: cannot read secret file {dir}/secret (Is a directory)"),
        ("empty", "agent.api_key: secret file {dir}/secret is empty"),
        ("binary", "agent.api_key: secret file {dir}/secret is not UTF-8 text"),
        ("huge", "agent.api_key: secret file {dir}/secret is over 64 KiB"),
    ],
)
def test_an_unusable_secret_file_is_one_line_naming_the_key(tmp_path: Path, setup: str, expected: str) -> None:
    secret = tmp_path / "secret"
    if setup == "directory":
        secret.mkdir()
    elif setup == "empty":
        secret.write_text(" \n")
    elif setup == "binary":
        secret.write_bytes(b"\xff\xfe\x00key")
    elif setup == "huge":
        secret.write_text("k" * (65 * 1024))
    cfg = write(tmp_path, f'[agent]\napi_key = "file:{secret}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    assert str(info.value) == expected.format(dir=tmp_path)
    assert "\n" not in str(info.value)


def test_a_missing_variable_in_a_file_path_names_the_variable(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[agent]\napi_key = "file:${SECRETS_DIR}/chatbase"\n')
    with pytest.raises(ConfigError, match=r"^agent\.api_key: environment variable SECRETS_DIR is not set$"):
        load_settings(cfg, env={})


def test_check_reports_a_missing_secret_file_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, '[agent]\napi_key = "file:/run/secrets/does-not-exist"\nagent_id = "a"\n')
    assert main(["check", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err == ("switchboard: agent.api_key: cannot read secret file /run/secrets/does-not-exist "
                   "(No such file or directory)\n")


def test_check_never_prints_secrets_read_from_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = {"chatbase": "cb-FILE-SECRET-1", "signing": "slack-FILE-SECRET-2", "bot": "xoxb-FILE-SECRET-3"}
    for name, value in secrets.items():
        (tmp_path / name).write_text(value + "\n")
    cfg = write(tmp_path, "\n".join([
        "[gateway]", 'store = "memory://"',
        "[agent]", f'api_key = "file:{tmp_path}/chatbase"', 'agent_id = "a1"',
        "[channels.slack]", 'type = "slack"', f'bot_token = "file:{tmp_path}/bot"',
        f'signing_secret = "file:{tmp_path}/signing"',
    ]) + "\n")
    assert main(["check", "--config", str(cfg)]) == 0
    out = capsys.readouterr()
    assert "channel slack (slack)" in out.out
    for value in secrets.values():
        assert value not in out.out + out.err
