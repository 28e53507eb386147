"""Email channel resilience: dropped connections, restarts and crashes, renumbered folders, standby instances.

Real Dovecot, real SMTP (aiosmtpd), the real gateway; nothing may be lost and nothing answered twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from switchboard.testing import running_gateway
from tests.conftest_stores import PrivateRedis
from tests.fakes import mailserver
from tests.fakes.mailserver import Mailbox, SmtpSink, make_mail
from tests.test_email_channel import config, replies, until

pytestmark = pytest.mark.dovecot
dovecot_server = mailserver.dovecot_server
dovecot = mailserver.dovecot
smtp_sink = mailserver.smtp_sink


async def test_connection_killed_mid_idle_loses_and_repeats_nothing(
    dovecot: Mailbox, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="switchboard.channel.mail")
    before = make_mail("Question one", subject="One")
    during = make_mail("Question two", subject="Two")
    after = make_mail("Question three", subject="Three")
    async with running_gateway(config(dovecot, smtp_sink)) as gw:
        dovecot.append(before)
        await replies(smtp_sink, 1)
        await until(lambda: "\\Answered" in dovecot.flags().get(before["Message-ID"], set()), "first flagged")
        await asyncio.sleep(0.2)  # the poller is back in IDLE
        dovecot.kick()
        dovecot.append(during)  # arrives while the gateway is disconnected
        await until(lambda: "IMAP reconnected" in caplog.text, "the reconnect")
        dovecot.append(after)
        await replies(smtp_sink, 3)
        await gw.idle()
        await asyncio.sleep(0.3)  # room for a duplicate to show up, were there one

    assert sorted(m["In-Reply-To"] for m in smtp_sink.messages) == sorted(
        m["Message-ID"] for m in (before, during, after)
    )
    assert len(smtp_sink.messages) == 3


async def test_gateway_restart_processes_nothing_twice(
    dovecot: Mailbox, smtp_sink: SmtpSink, tmp_path: Any
) -> None:
    store = f"sqlite:///{tmp_path}/state.db"
    first = make_mail("First question", subject="First")
    slow = make_mail("Second question", subject="Second")
    while_down = make_mail("Third question", subject="Third")
    async with running_gateway(config(dovecot, smtp_sink), store=store) as gw:
        dovecot.append(first)
        await replies(smtp_sink, 1)
        await gw.idle()
        # The agent is slow on the next mail: the gateway stops while that turn is in flight.
        gw.emulator.faults.latency = 30
        dovecot.append(slow)
        await until(lambda: len(gw.emulator.requests) >= 2, "the second agent call")
    assert len(smtp_sink.messages) == 1
    dovecot.append(while_down)
    async with running_gateway(config(dovecot, smtp_sink), store=store) as gw:
        await replies(smtp_sink, 3)
        await gw.idle()
        await asyncio.sleep(0.3)

    answered = [m["In-Reply-To"] for m in smtp_sink.messages]
    assert sorted(answered) == sorted(m["Message-ID"] for m in (first, slow, while_down))


async def test_polling_when_the_server_has_no_idle(dovecot_server: Any, smtp_sink: SmtpSink) -> None:
    box = dovecot_server.mailbox(idle=False)
    async with running_gateway(config(box, smtp_sink)) as gw:
        await until(lambda: gw.channel("mail").poller.scanned.is_set(), "the first scan")
        mail = make_mail("Polling works?")
        box.append(mail)
        [reply] = await replies(smtp_sink, 1)
        await gw.idle()
    assert reply["In-Reply-To"] == mail["Message-ID"]


async def test_a_renumbered_mailbox_is_rescanned_without_answering_twice(
    dovecot: Mailbox, smtp_sink: SmtpSink, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = f"sqlite:///{tmp_path}/state.db"
    dovecot.create("Support")
    answered = make_mail("Answered before", subject="Old")
    async with running_gateway(config(dovecot, smtp_sink, mailbox="Support"), store=store) as gw:
        dovecot.append(answered, "Support")
        await replies(smtp_sink, 1)
        await gw.idle()
        await until(lambda: "\\Answered" in dovecot.flags("Support").get(answered["Message-ID"], set()), "flags")
    # The folder is rebuilt (a restore, a server migration): same mail, new UIDVALIDITY, new UIDs.
    dovecot.delete("Support")
    dovecot.create("Support")
    fresh = make_mail("Arrived during the migration", subject="New")
    dovecot.append(answered, "Support", flags="\\Seen \\Answered")
    dovecot.append(fresh, "Support")
    caplog.set_level(logging.WARNING, logger="switchboard.channel.mail")
    async with running_gateway(config(dovecot, smtp_sink, mailbox="Support"), store=store) as gw:
        await replies(smtp_sink, 2)
        await gw.idle()
        await asyncio.sleep(0.3)
    assert "UIDVALIDITY of Support changed" in caplog.text
    assert [m["In-Reply-To"] for m in smtp_sink.messages] == [answered["Message-ID"], fresh["Message-ID"]]


@pytest.mark.parametrize("backlog_days", [7, 0])
async def test_first_start_answers_recent_unseen_mail_only(
    dovecot: Mailbox, smtp_sink: SmtpSink, backlog_days: int
) -> None:
    now = time.time()
    ancient = make_mail("Unread for a month", subject="Ancient")
    read = make_mail("Someone already read this", subject="Read")
    recent = make_mail("Sent while the gateway was being set up", subject="Recent")
    dovecot.append(ancient, received=now - 30 * 86400)
    dovecot.append(read, flags="\\Seen")
    dovecot.append(recent, received=now - 3600)
    expected = [recent] if backlog_days else []
    async with running_gateway(config(dovecot, smtp_sink, backlog_days=backlog_days)) as gw:
        await until(lambda: gw.channel("mail").poller.scanned.is_set(), "the first scan")
        await replies(smtp_sink, len(expected))
        later = make_mail("New mail is always answered", subject="Later")
        dovecot.append(later)
        await replies(smtp_sink, len(expected) + 1)
        await gw.idle()
    assert [m["In-Reply-To"] for m in smtp_sink.messages] == [m["Message-ID"] for m in [*expected, later]]
    assert "\\Seen" not in dovecot.flags()[ancient["Message-ID"]]  # left alone for a person


async def test_idle_is_renewed(
    dovecot: Mailbox, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import channels.email.inbound as inbound

    monkeypatch.setattr(inbound, "IDLE_RENEW", 0.1)
    async with running_gateway(config(dovecot, smtp_sink)) as gw:
        poller = gw.channel("mail").poller
        for _ in range(3):  # the watcher leaves IDLE, rescans and idles again
            poller.scanned.clear()
            await until(poller.scanned.is_set, "another IDLE round")
        mail = make_mail("Still listening?")
        dovecot.append(mail)
        [reply] = await replies(smtp_sink, 1)
        await gw.idle()
    assert reply["In-Reply-To"] == mail["Message-ID"]


@pytest.mark.redis
async def test_two_instances_answer_each_mail_once_and_hand_over(
    dovecot: Mailbox, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import channels.email.inbound as inbound

    monkeypatch.setattr(inbound, "LEASE_TTL", 3.0)
    first, second = make_mail("One", subject="One"), make_mail("Two", subject="Two")
    with PrivateRedis() as redis:  # several instances share a store only through Redis
        async with running_gateway(config(dovecot, smtp_sink), store=redis.url) as gw_a:
            async with running_gateway(config(dovecot, smtp_sink), store=redis.url) as gw_b:
                dovecot.append(first)
                await replies(smtp_sink, 1)
                await gw_a.idle()
                await gw_b.idle()
                watching = [gw for gw in (gw_a, gw_b) if gw.channel("mail").poller.scanned.is_set()]
                assert len(watching) == 1  # the other instance stands by
            # The instance that is left takes over at once.
            dovecot.append(second)
            await replies(smtp_sink, 2)
            await gw_a.idle()
            await asyncio.sleep(0.3)
    assert [m["In-Reply-To"] for m in smtp_sink.messages] == [first["Message-ID"], second["Message-ID"]]


async def test_a_killed_gateway_resumes_without_answering_twice(
    dovecot: Mailbox, smtp_sink: SmtpSink, tmp_path: Any
) -> None:
    from adapters.emulator import Emulator
    from gateway.cli import free_port
    from tests.processes import GatewayProcess, write_config

    emulator = Emulator()
    first, in_flight, while_down = (make_mail(f"Question {n}", subject=n) for n in ("one", "two", "three"))
    async with emulator.serve() as api_base:
        port = free_port()
        channel = config(dovecot, smtp_sink)["mail"]
        cfg = write_config(tmp_path / "switchboard.toml", {
            "gateway": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}",
                        "store": f"sqlite:///{tmp_path}/state.db"},
            "agent": {"api_base": api_base, "api_key": "k", "agent_id": "a"},
            "channels.mail": channel,
        })
        gateway = GatewayProcess(cfg, port)
        await gateway.start()
        try:
            dovecot.append(first)
            await replies(smtp_sink, 1)
            emulator.faults.latency = 30  # the next answer is in flight when the gateway dies
            dovecot.append(in_flight)
            await until(lambda: any("Question two" in str(r.json) for r in emulator.requests), "the agent call")
            await gateway.kill()
            emulator.faults.latency = 0
            dovecot.append(while_down)
            await gateway.start()
            await replies(smtp_sink, 3)
            await asyncio.sleep(0.5)  # room for a duplicate to show up, were there one
        finally:
            await gateway.stop()
    answered = sorted(m["In-Reply-To"] for m in smtp_sink.messages)
    assert answered == sorted(m["Message-ID"] for m in (first, in_flight, while_down)), gateway.read_log()


async def test_a_mail_that_trips_a_bug_does_not_block_the_others(
    dovecot: Mailbox, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import channels.email.inbound as inbound

    real_parse = inbound.parse_mail

    def fragile_parse(raw: bytes) -> Any:
        if b"POISON" in raw:
            raise RuntimeError("a parser bug")
        return real_parse(raw)

    monkeypatch.setattr(inbound, "parse_mail", fragile_parse)
    poison, fine = make_mail("POISON"), make_mail("A normal question", subject="Fine")
    async with running_gateway(config(dovecot, smtp_sink)) as gw:
        dovecot.append(poison)
        dovecot.append(fine)
        [reply] = await replies(smtp_sink, 1)
        await gw.idle()
    assert reply["In-Reply-To"] == fine["Message-ID"]
    assert "\\Seen" not in dovecot.flags()[poison["Message-ID"]]  # left for a person to look at
    assert "could not be handled" in caplog.text
