"""The delivery promises (docs/guarantees.md) on Teams: a real `switchboard serve` process, killed
with SIGKILL mid-answer and restarted, against the fake Bot Framework; retries; order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import free_port
from switchboard.testing import running_gateway, wait_until
from switchboard.testing.teams import GROUP, PERSONAL, FakeTeams
from tests.processes import GatewayProcess, write_config


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    from adapters.emulator import Emulator

    emu = Emulator()
    async with emu.serve("127.0.0.1", 0) as url:
        emu.base_url = url
        yield emu


def chats(emulator: Any) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.method == "POST" and r.path.endswith("/chat")]


def process(tmp_path: Path, teams: FakeTeams, emulator: Any) -> GatewayProcess:
    port = free_port()
    cfg = write_config(tmp_path / "teams.toml", {
        "gateway": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}",
                    "store": f"sqlite:///{tmp_path}/state.db", "lease_ttl": 2, "sweep_interval": 0.5,
                    "shutdown_grace": 2},
        "agent": {"api_base": emulator.base_url, "api_key": "k", "agent_id": "a", "timeout": 10},
        "channels.teams": teams.channel_config(edit_interval=0.1),
    })
    return GatewayProcess(cfg, port)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["group chat", "personal chat"])
async def test_kill_9_mid_answer_then_restart_shows_one_complete_answer(
    where: str, tmp_path: Path, emulator: Any
) -> None:
    async with FakeTeams() as teams:
        conversation = GROUP if where == "group chat" else PERSONAL
        activity = teams.message("long 400", conversation=conversation,
                                 kind="groupChat" if where == "group chat" else "personal", mention=True)
        gateway = process(tmp_path, teams, emulator)
        emulator.faults.token_delay = 0.05
        await gateway.start()
        try:
            assert (await teams.send(f"{gateway.url}/webhooks/teams", activity))[0] == 200
            if where == "group chat":
                await wait_until(lambda: any(p.edits for p in teams.conversation(GROUP)), "the answer to grow", 30)
            else:
                await wait_until(lambda: any(len(s.steps) >= 3 for s in teams.streams.values()), "chunks", 30)
            await gateway.kill()
            assert not any(p.text.endswith("of the long answer.") for p in teams.conversation(conversation))
            emulator.faults.token_delay = 0.0
            await gateway.start()
            await wait_until(lambda: any(p.text.endswith("of the long answer.")
                                         for p in teams.conversation(conversation)), "the full answer", 30)
            await asyncio.sleep(1)  # room for a duplicate to show up, were there one
        finally:
            await gateway.stop()
        [answer] = teams.conversation(conversation)  # grown in place: never a second copy
        assert "sentence 1 of" in answer.text, gateway.read_log()[-3000:]
        if where == "personal chat":
            [stream] = teams.streams.values()  # the resumed turn ended the stream it had started
            assert stream.ended and answer.id == stream.id
        # The agent recorded the question before the kill: the resumed turn reads the conversation
        # back and regenerates the cut-off answer instead of asking again (issue 16, item 2).
        assert len(chats(emulator)) == 1
        [conv] = emulator.state.conversations.values()
        assert [m.text for m in conv.messages if m.role == "user"] == ["long 400"]


async def test_connector_outages_are_retried_and_every_answer_arrives_in_order() -> None:
    async with FakeTeams() as teams:
        async with running_gateway({"teams": teams.channel_config(streaming=False)}) as gw:
            teams.fail_next("send", 503, "service unavailable")
            teams.fail_next("send", 502, "bad gateway")
            hook = f"{gw.url}/webhooks/teams"
            for n in range(8):
                assert (await teams.send(hook, teams.message(f"n{n}")))[0] == 200
            await gw.idle(60)
        assert teams.texts(PERSONAL) == [
            f'You said: "n{n}". This is message {n + 1} of this conversation.' for n in range(8)
        ]
