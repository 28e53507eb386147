"""Several agents behind one gateway: config, `switchboard check`, routing, budgets, no mixing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.emulator import Emulator
from gateway.admin.api import encode_id
from gateway.config import parse_settings
from gateway.errors import ConfigError
from gateway.logs import fields_of
from switchboard.testing import GatewayUnderTest, running_gateway

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "echo-secret"
ADMIN = "admin-secret"
#: channel "help" talks to [agent] ("default"), channel "shop" to [agents.sales]
CHANNELS = {
    "help": {"type": "echo", "token": TOKEN},
    "shop": {"type": "echo", "token": TOKEN, "agent": "sales"},
}


def _config(**extra: Any) -> dict[str, Any]:
    return {
        "agent": {"api_key": "k1", "agent_id": "a1"},
        "agents": {"sales": {"api_key": "k2", "agent_id": "a2"}},
        "channels": {"web1": {"type": "web"}},
        **extra,
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_config(channels={"web1": {"type": "web", "agent": "sale"}}),
         "channels.web1.agent: there is no agent 'sale' (known: default, sales)"),
        (_config(handoff={"agent": "nobody"}),
         "handoff.agent: there is no agent 'nobody' (known: default, sales)"),
        ({"agents": {"default": {"api_key": "k"}}},
         "agents.default: the name 'default' is the [agent] section's"),
        ({"agents": {"a b": {"api_key": "k"}}},
         "agents.a b: an agent name is 1-63 letters, digits, '-' or '_'"),
        ({"agents": {"sales": {"api_key": "k", "rate_limit": "lots"}}}, "agents.sales.rate_limit"),
    ],
)
def test_agent_mistakes_are_one_line_naming_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, env={})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_channel_naming_a_defined_agent_is_valid() -> None:
    settings = parse_settings(_config(channels={"web1": {"type": "web", "agent": "sales"}}), env={})
    assert settings.all_agents["sales"].agent_id == "a2" and settings.all_agents["default"].agent_id == "a1"


def _check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(cfg)], capture_output=True,
                          text=True, env=dict(os.environ), cwd=ROOT, timeout=60)


def test_check_prints_the_agent_of_each_channel(tmp_path: Path) -> None:
    result = _check(tmp_path, (
        '[agent]\napi_key = "k1"\nagent_id = "helper"\n'
        '[agents.sales]\napi_key = "k2"\nagent_id = "seller"\n'
        '[channels.chat]\ntype = "web"\n'
        '[channels.shop]\ntype = "web"\nagent = "sales"\n'
    ))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    chat = next(i for i, line in enumerate(lines) if line.startswith("channel chat (web)"))
    shop = next(i for i, line in enumerate(lines) if line.startswith("channel shop (web)"))
    assert "  agent: default (agent_id helper)" in lines[chat:shop]
    assert "  agent: sales (agent_id seller)" in lines[shop:]
    assert "k1" not in result.stdout and "k2" not in result.stdout


def test_check_requires_a_key_for_every_agent_a_channel_uses(tmp_path: Path) -> None:
    result = _check(tmp_path, (
        '[agents.sales]\nagent_id = "seller"\n'
        '[channels.shop]\ntype = "web"\nagent = "sales"\n'
    ))
    assert result.returncode == 1
    # [agent] is unused here, so only the agent the channel names must be complete.
    assert result.stderr.strip() == "switchboard: agents.sales: api_key and agent_id are required"


# -- two agents on one gateway ------------------------------------------------------------------
@pytest.fixture
async def two(echo_plugin: Any) -> AsyncIterator[GatewayUnderTest]:
    emulator = Emulator()
    async with emulator.serve("127.0.0.1", 0) as api_base:
        sections = {
            "agents": {"sales": {"api_base": api_base, "api_key": "sales-key", "agent_id": "sales-agent",
                                 "rate_limit": "50/10s"}},
        }
        async with running_gateway(CHANNELS, sections, emulator=emulator, emulator_url=api_base,
                                   gateway={"admin_token": ADMIN}) as gw:
            yield gw


async def _say(gw: GatewayUnderTest, channel: str, key: str, text: str, user: str = "ann") -> None:
    async with aiohttp.ClientSession() as s:
        body = json.dumps({"id": key, "user": user, "text": text}).encode()
        resp = await s.post(f"{gw.url}/webhooks/{channel}", data=body, headers={"X-Echo-Token": TOKEN})
        assert resp.status == 200, await resp.text()
    await gw.idle()


def _chats(gw: GatewayUnderTest) -> list[tuple[str, dict[str, Any]]]:
    """(agent id, body) of every chat call the emulator received."""
    return [(r.path.split("/")[-2], r.json) for r in gw.emulator.requests
            if r.method == "POST" and r.path.endswith("/chat")]


async def test_each_channel_reaches_its_own_agent_with_its_own_key_budget_and_conversation(
    two: GatewayUnderTest, echo_plugin: Any
) -> None:
    gw = two
    # The same person on both channels: one identity, one userId, two agents.
    for n in (1, 2):
        await _say(gw, "help", f"h{n}", f"help me {n}")
        await _say(gw, "shop", f"s{n}", f"sell me {n}")
    by_channel = {c: [x["text"] for x in echo_plugin.SENT if x["channel"] == c] for c in ("help", "shop")}
    # Each agent's conversation counts only its own messages: nothing of the other channel leaked in.
    assert by_channel == {
        "help": ['You said: "help me 1". This is message 1 of this conversation.',
                 'You said: "help me 2". This is message 2 of this conversation.'],
        "shop": ['You said: "sell me 1". This is message 1 of this conversation.',
                 'You said: "sell me 2". This is message 2 of this conversation.'],
    }
    chats = _chats(gw)
    agents_of = {agent for agent, _ in chats}
    assert agents_of == {"test-agent", "sales-agent"}
    conversations = {agent: {c.id for c in gw.emulator.state.conversations.values() if c.agent_id == agent}
                     for agent in agents_of}
    assert all(len(ids) == 1 for ids in conversations.values()), conversations
    assert conversations["test-agent"].isdisjoint(conversations["sales-agent"])
    # Second messages continue the conversation of their own agent.
    for agent, body in chats:
        if "conversationId" in body:
            assert body["conversationId"] in conversations[agent]
    # Each agent used its own key...
    counted = gw.emulator.rate_limiter.counted()
    assert counted["test-key"] >= 2 and counted["sales-key"] >= 2
    # ...and its own budget, which /metrics names by agent, as it does the agent calls.
    async with aiohttp.ClientSession() as s:
        text = await (await s.get(f"{gw.url}/metrics")).text()
    for agent in ("default", "sales"):
        assert f'switchboard_agent_budget_wait_seconds_count{{agent="{agent}"}} 2.0' in text
        assert f'switchboard_agent_calls_total{{agent="{agent}",kind="chat",outcome="ok"}}' in text
    assert 'switchboard_channel_agent{agent="sales",channel="shop"} 1.0' in text
    assert 'switchboard_channel_agent{agent="default",channel="help"} 1.0' in text


async def test_new_on_one_agent_leaves_the_other_agents_conversation_alone(
    two: GatewayUnderTest, echo_plugin: Any
) -> None:
    gw = two
    await _say(gw, "help", "h1", "one")
    await _say(gw, "shop", "s1", "one")
    await _say(gw, "shop", "s2", "/new")
    await _say(gw, "help", "h2", "two")
    await _say(gw, "shop", "s3", "two")
    last = {x["channel"]: x["text"] for x in echo_plugin.SENT}
    assert last == {
        "help": 'You said: "two". This is message 2 of this conversation.',
        "shop": 'You said: "two". This is message 1 of this conversation.',
    }


async def test_admin_api_shows_each_conversations_agent_and_reads_messages_from_it(
    two: GatewayUnderTest, echo_plugin: Any
) -> None:
    gw = two
    await _say(gw, "help", "h1", "from help")
    await _say(gw, "shop", "s1", "from shop")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        for channel, agent, text in (("help", "default", "from help"), ("shop", "sales", "from shop")):
            key = encode_id(f"{channel}:ann")
            view = await (await s.get(f"{gw.url}/admin/conversations/{key}")).json()
            assert view["agent"] == agent
            resp = await s.get(f"{gw.url}/admin/conversations/{key}/messages")
            assert resp.status == 200, await resp.text()
            contents = json.dumps(await resp.json())
            assert text in contents and ({"from help", "from shop"} - {text}).pop() not in contents


async def test_turn_logs_carry_the_agents_name(
    two: GatewayUnderTest, echo_plugin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.turns")
    await _say(two, "help", "h1", "hi")
    await _say(two, "shop", "s1", "hi")
    turns = [fields_of(r) for r in caplog.records if r.name == "gateway.turns" and r.getMessage().startswith("turn ")]
    # One turn on "help", then one on "shop" (each waited for): their log lines name their agents.
    assert [f["agent"] for f in turns] == ["default", "sales"]
