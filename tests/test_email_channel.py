"""The email channel end to end: a real Dovecot IMAP server, a real SMTP server (aiosmtpd), the gateway.

Mail is put into the bot's mailbox with imaplib APPEND, exactly as a delivery agent would; what
the gateway sends is read back from the SMTP server, and the flags it sets from Dovecot.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest

from switchboard.testing import running_gateway, wait_until
from tests.fakes import mailserver
from tests.fakes.mailserver import ADDRESS, Dovecot, Mailbox, SmtpSink, make_mail, serving_smtp

pytestmark = pytest.mark.dovecot
# The mail server fixtures, made visible to this module's tests.
dovecot_server = mailserver.dovecot_server
dovecot = mailserver.dovecot
smtp_sink = mailserver.smtp_sink


def config(box: Mailbox, sink: SmtpSink, **extra: Any) -> dict[str, dict[str, Any]]:
    return {"mail": {"type": "email", **box.settings(), **sink.settings(), "poll_interval": 0.2, **extra}}


async def until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for something the user would see; fail with ``what`` if it never happens.

    Generous: a passing run waits only as long as the mail takes, and 15 s was once too short for
    a gateway process to start and poll on a machine busy with other test runs.
    """
    await wait_until(predicate, what, timeout)


async def replies(sink: SmtpSink, count: int) -> list[EmailMessage]:
    await until(lambda: len(sink.messages) >= count, f"{count} reply mail(s)")
    return sink.messages


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def html_of(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("html",))
    assert body is not None
    return str(body.get_content())


async def test_new_mail_is_answered_in_thread_with_correct_headers(
    dovecot: Mailbox, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    original = make_mail("What are your opening hours?", subject="Opening hours")
    async with running_gateway(config(dovecot, smtp_sink, display_name="Help Desk")) as gw:
        dovecot.append(original)
        [reply] = await replies(smtp_sink, 1)
        await gw.idle()
        await until(lambda: "\\Seen" in dovecot.flags().get(original["Message-ID"], set()), "original flagged")

    assert email.utils.parseaddr(reply["To"])[1].lower() == "alice@example.org"
    assert reply["From"] == f"Help Desk <{ADDRESS}>"
    assert reply["Subject"] == "Re: Opening hours"
    assert reply["In-Reply-To"] == original["Message-ID"]
    assert original["Message-ID"] in reply["References"].split()
    assert reply["Message-ID"].endswith("@example.test>")
    assert reply["Message-ID"] != original["Message-ID"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply.get_content_type() == "multipart/alternative"
    assert 'You said: "Opening hours' in text_of(reply)
    assert "What are your opening hours?" in text_of(reply)
    assert "This is message 1 of this conversation" in text_of(reply)
    assert "message 1 of this conversation" in html_of(reply) and "<" in html_of(reply)
    assert smtp_sink.logins == [dovecot.user]  # SMTP AUTH with the configured login
    assert smtp_sink.envelopes[0][1] == ["alice@example.org"]
    assert {"\\Seen", "\\Answered"} <= dovecot.flags()[original["Message-ID"]]
    assert "IMAP" in caplog.text or "replied" in caplog.text
    assert mailserver.PASSWORD not in caplog.text  # not even at DEBUG level


async def test_reply_in_the_thread_continues_the_conversation(dovecot: Mailbox, smtp_sink: SmtpSink) -> None:
    first = make_mail("Do you ship to Norway?", subject="Shipping")
    async with running_gateway(config(dovecot, smtp_sink)) as gw:
        dovecot.append(first)
        [answer] = await replies(smtp_sink, 1)
        # Alice answers our reply; her client keeps only our Message-ID in References and quotes us.
        follow_up = make_mail(
            "And to Sweden?\n\nOn Mon, 1 Jan 2024 at 10:00, Bot <bot@example.test> wrote:\n"
            + "".join(f"> {line}\n" for line in text_of(answer).splitlines()),
            subject="RE: Re: Shipping",
            in_reply_to=answer["Message-ID"],
            references=answer["Message-ID"],
        )
        dovecot.append(follow_up)
        second = (await replies(smtp_sink, 2))[1]
        # A new thread from the same person is a new conversation.
        dovecot.append(make_mail("Unrelated question", subject="Invoices"))
        third = (await replies(smtp_sink, 3))[2]
        await gw.idle()

    assert "This is message 2 of this conversation" in text_of(second)
    assert 'You said: "And to Sweden?"' in text_of(second)  # quoted history was not sent to the agent
    assert second["Subject"] == "Re: Shipping"
    assert second["In-Reply-To"] == follow_up["Message-ID"]
    assert second["References"].split() == [answer["Message-ID"], follow_up["Message-ID"]]
    assert "This is message 1 of this conversation" in text_of(third)


async def test_auto_replies_lists_and_bounces_are_never_answered(dovecot: Mailbox, smtp_sink: SmtpSink) -> None:
    ignored = [
        make_mail("I am out of office", subject="Out of office", headers={"Auto-Submitted": "auto-replied"}),
        make_mail("Weekly digest", sender="news@lists.example.org", headers={"List-Id": "<news.example.org>"}),
        make_mail("Delivery failed", sender="MAILER-DAEMON@example.org", headers={"Return-Path": "<>"}),
        make_mail("Ping", sender="Bot <BOT@example.test>"),  # our own address
        make_mail("Promo", sender="noreply@shop.example.com", headers={"Precedence": "bulk"}),
    ]
    person = make_mail("A real question", sender="Bob <bob@example.net>", subject="Question")
    async with running_gateway(config(dovecot, smtp_sink)) as gw:
        for mail in ignored:
            dovecot.append(mail)
        dovecot.append(person)
        # Mail is handled in arrival order, so once the person is answered the others were decided.
        await replies(smtp_sink, 1)
        await gw.idle()
        requests = [r for r in gw.emulator.requests if r.path.endswith("/chat")]

    assert [m["To"] for m in smtp_sink.messages] == ["Bob <bob@example.net>"]
    assert len(requests) == 1
    flags = dovecot.flags()
    for mail in ignored:  # skipped mail is marked read so it is not looked at again
        assert "\\Seen" in flags[mail["Message-ID"]]
        assert "\\Answered" not in flags[mail["Message-ID"]]


async def test_html_only_mail(dovecot: Mailbox, smtp_sink: SmtpSink) -> None:
    mail = make_mail(subject="Order")
    mail.set_content(
        "<html><head><style>p {color: red}</style></head><body><p>Where is <b>order 1234</b>?</p>"
        '<div class="gmail_quote">On Mon, Bot wrote:<blockquote>old answer</blockquote></div></body></html>',
        subtype="html",
    )
    async with running_gateway(config(dovecot, smtp_sink)) as gw:
        dovecot.append(mail)
        [reply] = await replies(smtp_sink, 1)
        await gw.idle()
        asked = [r.json for r in gw.emulator.requests if r.path.endswith("/chat")]

    assert "Here is what I found for order 1234" in text_of(reply)
    assert "Where is order 1234?" in str(asked[0])
    assert "color" not in str(asked[0]) and "old answer" not in str(asked[0])


async def test_non_utf8_mail_with_encoded_subject(dovecot: Mailbox, smtp_sink: SmtpSink) -> None:
    raw = (
        "From: =?iso-8859-1?q?Ren=E9e_M=FCller?= <renee@example.org>\r\n"
        f"To: {ADDRESS}\r\n"
        "Subject: =?iso-8859-1?q?Caf=E9_men=FC?=\r\n"
        "Message-ID: <latin1@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=windows-1252\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + "Is the café open? A crème brûlée costs €5 - right? Ünïcödé\r\n".encode("cp1252")
    broken = (
        "From: Zoe <zoe@example.org>\r\n"
        f"To: {ADDRESS}\r\n"
        "Subject: =?x-unknown?q?Hi=FF?= there\r\n"
        "Message-ID: <bogus@example.org>\r\n"
        "Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n"
    ).encode() + b"Plain question \xff\xfe\r\n"
    async with running_gateway(config(dovecot, smtp_sink)) as gw:
        dovecot.append(raw)
        dovecot.append(broken)
        await replies(smtp_sink, 2)
        await gw.idle()

    by_thread = {m["In-Reply-To"]: m for m in smtp_sink.messages}
    latin = by_thread["<latin1@example.org>"]
    assert latin["Subject"] == "Re: Café menü"
    assert "Is the café open? A crème brûlée costs €5 - right? Ünïcödé" in text_of(latin)
    assert latin["To"] == "Renée Müller <renee@example.org>"
    assert "Plain question" in text_of(by_thread["<bogus@example.org>"])


async def test_answered_mail_moves_to_the_processed_folder(dovecot: Mailbox, smtp_sink: SmtpSink) -> None:
    mail = make_mail("Please file me")
    async with running_gateway(config(dovecot, smtp_sink, processed_mailbox="Answered")) as gw:
        dovecot.append(mail)
        await replies(smtp_sink, 1)
        await gw.idle()
        await until(lambda: mail["Message-ID"] in dovecot.flags("Answered"), "the move")
    assert mail["Message-ID"] not in dovecot.flags()
    assert "\\Seen" in dovecot.flags("Answered")[mail["Message-ID"]]


async def test_replies_per_sender_are_capped(dovecot: Mailbox, smtp_sink: SmtpSink) -> None:
    mails = [make_mail(f"Question {i}", subject=f"Topic {i}") for i in range(3)]
    other = make_mail("From someone else", sender="carol@example.net")
    async with running_gateway(config(dovecot, smtp_sink, max_replies_per_hour=2)) as gw:
        for mail in [*mails, other]:
            dovecot.append(mail)
        await replies(smtp_sink, 3)
        await gw.idle()
    answered = {m["In-Reply-To"] for m in smtp_sink.messages}
    assert answered == {mails[0]["Message-ID"], mails[1]["Message-ID"], other["Message-ID"]}
    assert "\\Seen" in dovecot.flags()[mails[2]["Message-ID"]]


async def test_smtp_4xx_is_retried_and_5xx_is_not(dovecot: Mailbox, smtp_sink: SmtpSink) -> None:
    greylisted = make_mail("Try me twice", subject="Greylisted")
    refused = make_mail("Never delivered", sender="dave@example.net", subject="Refused")
    async with running_gateway(config(dovecot, smtp_sink)) as gw:
        smtp_sink.fail_next("451 4.7.1 Greylisted, try again later")
        dovecot.append(greylisted)
        [reply] = await replies(smtp_sink, 1)
        await gw.idle()
        smtp_sink.fail_next("554 5.7.1 Message rejected", count=10)
        dovecot.append(refused)
        await until(lambda: smtp_sink.refusals_left < 10, "the refused attempt")
        await gw.idle()
        failures = gw.services.metrics.registry.get_sample_value(
            "switchboard_delivery_failures_total", {"channel": "mail", "reason": "ChannelPermanentError"}
        )
    assert reply["In-Reply-To"] == greylisted["Message-ID"]
    assert len(smtp_sink.messages) == 1
    assert smtp_sink.refusals_left == 9  # one attempt only: a 5xx is not retried
    assert failures == 1


@pytest.mark.parametrize(("imap", "smtp"), [("tls", "starttls"), ("starttls", "tls")])
async def test_tls_and_starttls_with_the_operators_ca(dovecot_server: Dovecot, imap: str, smtp: str) -> None:
    box = dovecot_server.mailbox()
    port = dovecot_server.tls_port if imap == "tls" else dovecot_server.port
    imap_keys = box.settings(imap_host="localhost", imap_port=port, imap_security=imap)
    with serving_smtp(smtp, dovecot_server.cert) as sink:
        channel = {"type": "email", **imap_keys, **sink.settings(), "tls_ca_file": str(dovecot_server.cert)}
        async with running_gateway({"mail": channel}) as gw:
            mail = make_mail("Encrypted question")
            box.append(mail)
            [reply] = await replies(sink, 1)
            await gw.idle()
            await until(lambda: "\\Answered" in box.flags().get(mail["Message-ID"], set()), "original flagged")
    assert reply["In-Reply-To"] == mail["Message-ID"]
    assert sink.logins == [box.user]
    logins = [line for line in dovecot_server.log().splitlines() if f"Login: user=<{box.user}>" in line]
    # The watcher and the flagging session came over TLS (the test's own imaplib logins did not).
    assert sum(", TLS," in line for line in logins) >= 2


async def test_an_untrusted_certificate_is_refused(
    dovecot_server: Dovecot, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    box = dovecot_server.mailbox()
    imap_keys = box.settings(imap_host="localhost", imap_port=dovecot_server.tls_port, imap_security="tls")
    async with running_gateway({"mail": {"type": "email", **imap_keys, **smtp_sink.settings()}}) as gw:
        box.append(make_mail("Should wait"))
        await until(lambda: "CERTIFICATE_VERIFY_FAILED" in caplog.text, "the refused certificate")
        assert not gw.channel("mail").poller.scanned.is_set()
    assert smtp_sink.messages == []


async def test_forgetting_a_sender_also_forgets_their_reply_cap(dovecot: Mailbox, smtp_sink: SmtpSink) -> None:
    """The cap's counter is the email channel's own data about a person: a privacy request removes it."""
    import aiohttp

    first, second = make_mail("Question 1", subject="Topic 1"), make_mail("Question 2", subject="Topic 2")
    auth = {"Authorization": "Bearer admin-token"}
    capped = config(dovecot, smtp_sink, max_replies_per_hour=1)
    async with running_gateway(capped, gateway={"admin_token": "admin-token"}) as gw, \
            aiohttp.ClientSession(headers=auth) as http:
        dovecot.append(first)
        await replies(smtp_sink, 1)
        await gw.idle()
        async with http.get(f"{gw.url}/admin/identities") as resp:
            [person] = (await resp.json())["data"]
        async with http.delete(f"{gw.url}/admin/identities/{person['id']}") as resp:
            assert resp.status == 200
        dovecot.append(second)  # over the cap of 1, had the counter survived
        await replies(smtp_sink, 2)
    assert smtp_sink.messages[1]["In-Reply-To"] == second["Message-ID"]
