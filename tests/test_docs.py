"""Conventions a newcomer relies on: every plugin resolves, every channel and key is documented."""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gateway.channel import Channel, ChannelSettings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CHANNEL_EPS = sorted(entry_points(group="switchboard.channels"), key=lambda ep: ep.name)


@pytest.mark.parametrize("ep", CHANNEL_EPS, ids=lambda ep: ep.name)
def test_channel_entry_point_is_a_channel_of_that_type(ep: object) -> None:
    cls = ep.load()  # type: ignore[attr-defined]
    assert isinstance(cls, type) and issubclass(cls, Channel)
    assert cls.type == ep.name  # type: ignore[attr-defined]
    assert issubclass(cls.Settings, ChannelSettings)


@pytest.mark.parametrize("ep", CHANNEL_EPS, ids=lambda ep: ep.name)
def test_channel_type_and_keys_are_documented_in_the_readme(ep: object) -> None:
    cls = ep.load()  # type: ignore[attr-defined]
    name = ep.name  # type: ignore[attr-defined]
    assert re.search(rf'type = "{re.escape(name)}"', README), f"README shows no config for {name}"
    keys = [f.alias or name for name, f in cls.Settings.model_fields.items() if name != "type"]
    undocumented = [k for k in keys if k not in README]
    assert not undocumented, f"{name}: keys missing from the README: {undocumented}"


@pytest.mark.parametrize("group", ["switchboard.stores", "switchboard.tools"])
def test_every_store_and_tool_entry_point_loads(group: str) -> None:
    for ep in entry_points(group=group):
        assert callable(ep.load()), ep.name


def test_every_gateway_key_is_documented() -> None:
    from gateway.config import AgentSettings, GatewaySettings

    for prefix, model in (("gateway", GatewaySettings), ("agent", AgentSettings)):
        missing = [k for k in model.model_fields if f"{prefix}.{k}" not in README]
        assert not missing, f"README lacks {prefix} keys {missing}"
