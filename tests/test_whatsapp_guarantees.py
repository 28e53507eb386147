"""SPEC §5 on the WhatsApp Cloud API channel: a crash between the parts of an answer, platform
retries and failures, and order per person (the channel-neutral proofs are in test_guarantees.py).

The gateway runs as a real process (``switchboard serve``) where a crash matters, talking to the
fake Cloud API in this test process."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import free_port
from switchboard.testing import running_gateway, wait_until
from switchboard.testing.whatsapp import WA_ID, FakeWhatsApp, payload, post_signed, text
from tests.processes import GatewayProcess, write_config
from tests.test_whatsapp_gateway import wa_config


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    from adapters.emulator import Emulator

    emu = Emulator()
    async with emu.serve("127.0.0.1", 0) as url:
        emu.base_url = url
        yield emu


def chats(emulator: Any) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.method == "POST" and r.path.endswith("/chat")]


@pytest.mark.slow
async def test_kill_9_between_parts_then_restart_sends_only_the_missing_parts(tmp_path: Path, emulator: Any) -> None:
    async with FakeWhatsApp(delay=0.3) as wa:
        port = free_port()
        cfg = write_config(tmp_path / "g.toml", {
            "gateway": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}",
                        "store": f"sqlite:///{tmp_path}/state.db", "lease_ttl": 2, "sweep_interval": 0.5,
                        "shutdown_grace": 2, "user_rate_limit": 0},
            "agent": {"api_base": emulator.base_url, "api_key": "k", "agent_id": "a", "timeout": 10},
            "channels.wa": wa_config(wa),
        })
        first = GatewayProcess(cfg, port)
        await first.start()
        try:
            status, _ = await post_signed(f"{first.url}/webhooks/wa", payload([text("long 9000")]))
            assert status == 200
            await wait_until(lambda: len(wa.messages_to(WA_ID)) >= 1, "the first part", 30)
            await asyncio.sleep(0.1)  # the first part is saved as sent; the second is on its way
            await first.kill()
            before = len(wa.messages_to(WA_ID))
            wa.delay = 0.0
            second = GatewayProcess(cfg, port)
            await second.start()
            try:
                await wait_until(lambda: any(m["type"] == "interactive" for m in wa.messages_to(WA_ID)),
                                 "the last part", 30)
                await asyncio.sleep(1)  # nothing more may arrive
            finally:
                await second.stop()
        finally:
            await first.kill()
        parts = wa.texts_to(WA_ID)
    assert 1 <= before < len(parts)
    assert len(parts) == len(set(parts)), "a part was delivered twice"
    numbers = [int(n) for p in parts for n in re.findall(r"sentence (\d+) of", p)]
    assert numbers == list(range(1, len(numbers) + 1)), "lost or reordered"
    assert [m["type"] for m in wa.messages_to(WA_ID)][-1] == "interactive"
    assert len(chats(emulator)) == 1, "the agent was asked twice for an answer it had already given"


async def test_ten_messages_keep_their_order_through_send_failures() -> None:
    async with FakeWhatsApp() as wa, running_gateway({"wa": wa_config(wa, feedback_buttons=False)},
                                                     gateway={"user_rate_limit": 0}) as gw:
        wa.fail_next(500, 131000, message="(#131000) Something went wrong", count=3)
        for i in range(10):
            status, _ = await post_signed(f"{gw.url}/webhooks/wa", payload([text(f"n{i}", timestamp=1700000000 + i)]))
            assert status == 200
        await gw.idle(60)
        assert [r.json["message"] for r in gw.emulator.requests if r.path.endswith("/chat")] == [
            f"n{i}" for i in range(10)]
        assert wa.texts_to(WA_ID) == [
            f'You said: "n{i}". This is message {i + 1} of this conversation.' for i in range(10)]


async def test_a_batch_delivered_out_of_order_and_again_is_answered_once_in_order() -> None:
    async with FakeWhatsApp() as wa, running_gateway({"wa": wa_config(wa, feedback_buttons=False)}) as gw:
        items = [text(f"b{i}", timestamp=1700000000 + i) for i in range(4)]
        body = payload(list(reversed(items)))
        for _ in range(2):
            status, _ = await post_signed(f"{gw.url}/webhooks/wa", body)
            assert status == 200
        await gw.idle()
        assert wa.texts_to(WA_ID) == [
            f'You said: "b{i}". This is message {i + 1} of this conversation.' for i in range(4)]
