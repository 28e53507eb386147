"""Email parsing, loop rules, reply composition and settings: no servers needed (body text: test_email_text)."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest

from channels.email.compose import ReplyTarget, compose_reply, reply_subject, thread_references
from channels.email.inbound import question_text
from channels.email.parse import parse_mail
from channels.email.rules import skip_reason
from channels.email.settings import EmailSettings
from gateway.errors import ConfigError
from tests.fakes.mailserver import make_mail

OURS = "bot@example.test"


# -- parsing ---------------------------------------------------------------------------------------
def test_headers_and_body_are_decoded() -> None:
    mail = make_mail(
        "Hello\n\nOn Tue, Bot wrote:\n> old",
        sender='"Müller, Renée" <Renee@Example.ORG>',
        subject="Grüße  aus   Köln",
        in_reply_to="<a@x>",
        references="<root@x> <a@x>",
        headers={"Reply-To": "Support Team <team@example.org>"},
    )
    parsed = parse_mail(mail.as_bytes())
    assert parsed.sender == "renee@example.org"
    assert parsed.reply_to == "Support Team <team@example.org>"
    assert parsed.reply_addresses == ("team@example.org",)
    assert parsed.subject == "Grüße aus Köln"
    assert parsed.body == "Hello"
    assert parsed.message_id == mail["Message-ID"]
    assert parsed.thread_ids == ("<a@x>", "<root@x>")


def test_only_the_first_reply_to_address_is_answered() -> None:
    mail = make_mail(headers={"Reply-To": "a@example.org, b@example.org, c@example.org"})
    parsed = parse_mail(mail.as_bytes())
    assert parsed.reply_to == "a@example.org" and parsed.reply_addresses == ("a@example.org",)


def test_encoded_words_and_8bit_latin1_body() -> None:
    raw = (
        b"From: =?iso-8859-1?q?Ren=E9e?= <r@example.org>\r\n"
        b"Subject: =?iso-8859-1?q?Caf=E9?= =?utf-8?b?4oKs?=\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Un caf\xe9, s'il vous pla\xeet\r\n"
    )
    parsed = parse_mail(raw)
    assert parsed.subject == "Café€"
    assert parsed.reply_to == "Renée <r@example.org>"
    assert parsed.body == "Un café, s'il vous plaît"
    assert parsed.message_id is None


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@example.org\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\ncaf\xe9\r\n",
        b"From: a@example.org\r\nSubject: =?bogus?q?x=FF?= =?utf-8?b?!!!?=\r\n\r\nhi\r\n",
        b"From: =?utf-8?q?broken\r\nTo: <<<>>>\r\nReply-To: ,,,\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=zzz\r\n\r\n--zzz\r\nno end",
        b"From: a@example.org\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64",
        b"\x00\xff\xfe garbage without headers",
        b"",
    ],
)
def test_malformed_mail_never_raises(raw: bytes) -> None:
    parsed = parse_mail(raw)
    assert isinstance(parsed.body, str) and isinstance(parsed.subject, str)


def test_unknown_charset_falls_back_to_a_readable_guess() -> None:
    raw = b"From: a@example.org\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nna\xefve caf\xe9\r\n"
    assert parse_mail(raw).body == "naïve café"


def test_attachments_are_listed_not_inlined() -> None:
    mail = make_mail("See the attached invoice.")
    mail.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="invoice 42.pdf")
    mail.add_attachment(b"\x89PNG...", maintype="image", subtype="png")
    parsed = parse_mail(mail.as_bytes())
    assert parsed.body == "See the attached invoice."
    assert parsed.attachments == ("invoice 42.pdf", "unnamed image/png")
    question = question_text(parsed)
    assert question.endswith("(Attachments not included: invoice 42.pdf, unnamed image/png)")
    assert "PDF-1.4" not in question


def test_plain_text_is_preferred_over_html() -> None:
    mail = make_mail("plain version")
    mail.add_alternative("<p>html version</p>", subtype="html")
    assert parse_mail(mail.as_bytes()).body == "plain version"


def test_question_carries_the_subject_only_when_it_opens_a_thread() -> None:
    opening = parse_mail(make_mail("Is it in stock?", subject="Blue kettle").as_bytes())
    assert question_text(opening) == "Blue kettle\n\nIs it in stock?"
    subject_only = parse_mail(make_mail("", subject="Call me back").as_bytes())
    assert question_text(subject_only) == "Call me back"
    reply = parse_mail(make_mail("Thanks!", subject="Re: Blue kettle", in_reply_to="<x@y>").as_bytes())
    assert question_text(reply) == "Thanks!"
    empty_reply = parse_mail(make_mail("> only a quote", subject="Re: x", in_reply_to="<x@y>").as_bytes())
    assert question_text(empty_reply) == ""


# -- loop rules --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sender", "headers", "reason"),
    [
        ("a@example.org", {"Auto-Submitted": "auto-replied"}, "Auto-Submitted"),
        ("a@example.org", {"Auto-Submitted": "auto-generated; type=vacation"}, "Auto-Submitted"),
        ("a@example.org", {"Precedence": "bulk"}, "Precedence"),
        ("a@example.org", {"Precedence": "junk"}, "Precedence"),
        ("a@example.org", {"Precedence": "list"}, "Precedence"),
        ("a@example.org", {"List-Id": "<l.example.org>"}, "mailing list"),
        ("a@example.org", {"List-Unsubscribe": "<mailto:u@example.org>"}, "mailing list"),
        ("a@example.org", {"X-Autoreply": "yes"}, "automatic reply"),
        ("a@example.org", {"X-Autorespond": "yes"}, "automatic reply"),
        ("a@example.org", {"Return-Path": "<>"}, "Return-Path"),
        ("a@example.org", {"X-Loop": OURS}, "X-Loop"),
        ("MAILER-DAEMON@example.org", {}, "machine sender"),
        ("postmaster@example.org", {}, "machine sender"),
        ("no-reply@example.org", {}, "machine sender"),
        ("noreply@example.org", {}, "machine sender"),
        ("Bot@Example.Test", {}, "our own address"),
        ("a@example.org", {"Reply-To": OURS}, "our own address"),
    ],
)
def test_machine_mail_is_never_answered(sender: str, headers: dict[str, str], reason: str) -> None:
    mail = parse_mail(make_mail(sender=sender, headers=headers).as_bytes())
    found = skip_reason(mail, OURS)
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "headers",
    [{}, {"Auto-Submitted": "no"}, {"Precedence": "first-class"}, {"Return-Path": "<a@example.org>"}],
)
def test_mail_from_a_person_is_answered(headers: dict[str, str]) -> None:
    mail = parse_mail(make_mail(sender="Alice <alice@example.org>", headers=headers).as_bytes())
    assert skip_reason(mail, OURS) is None


def test_bounce_reports_are_never_answered() -> None:
    report = EmailMessage()
    report["From"] = "Mail Delivery System <daemon@example.org>"
    report.set_content("Your message could not be delivered")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; boundary="b"')
    mail = parse_mail(report.as_bytes())
    assert skip_reason(mail, OURS) == "delivery or read report"


# -- the reply ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Opening hours", "Re: Opening hours"),
        ("Re: Opening hours", "Re: Opening hours"),
        ("RE: Re: re:Opening hours", "Re: Opening hours"),
        ("AW: Öffnungszeiten", "Re: Öffnungszeiten"),
        ("Re[2]: x", "Re: x"),
        ("Reply needed", "Re: Reply needed"),
        ("", "Re: your message"),
    ],
)
def test_reply_subject_has_one_prefix(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_reply_headers_and_parts() -> None:
    target = ReplyTarget("Alice <alice@example.org>", "Hello", "<m2@x>", ("<root@x>", "<m1@x>"))
    msg = compose_reply(
        target, "**Yes**, we ship to *Norway*.\n\n- fast\n- cheap",
        from_address=OURS, display_name="Shop Bot", message_id="<new@example.test>",
    )
    parsed = message_from_bytes(msg.as_bytes(), policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    assert parsed["From"] == "Shop Bot <bot@example.test>"
    assert parsed["To"] == "Alice <alice@example.org>"
    assert parsed["Subject"] == "Re: Hello"
    assert parsed["In-Reply-To"] == "<m2@x>"
    assert parsed["References"] == "<root@x> <m1@x> <m2@x>"
    assert parsed["Message-ID"] == "<new@example.test>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert "**" not in plain.get_content() and "Norway" in plain.get_content()
    assert "<strong>Yes</strong>" in html.get_content() or "<b>Yes</b>" in html.get_content()


def test_long_threads_keep_their_root_in_references() -> None:
    refs = tuple(f"<m{i}@x>" for i in range(60))
    kept = thread_references(ReplyTarget("a@x.org", "s", "<last@x>", refs))
    assert kept[0] == "<m0@x>" and kept[-1] == "<last@x>" and len(kept) == 20


# -- settings --------------------------------------------------------------------------------------
BASE = {
    "type": "email", "imap_host": "imap.example.com", "smtp_host": "smtp.example.com",
    "username": "bot", "password": "hunter2-secret", "address": "Bot@Example.com",
}


def test_settings_defaults_and_secret_handling() -> None:
    settings = EmailSettings.model_validate(BASE)
    assert (settings.imap_port_number, settings.smtp_port_number) == (993, 587)
    assert settings.mailbox == "INBOX" and settings.max_replies_per_hour == 5
    assert settings.address == "bot@example.com" and settings.domain == "example.com"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert settings.smtp_login == ("bot", "hunter2-secret")
    assert EmailSettings.model_validate({**BASE, "smtp_username": ""}).smtp_login is None
    plain = EmailSettings.model_validate({**BASE, "imap_security": "none", "smtp_security": "tls"})
    assert (plain.imap_port_number, plain.smtp_port_number) == (143, 465)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"imap_security": "ssl"}, "imap_security"),
        ({"address": "not-an-address"}, "address"),
        ({"mailbox": 'Bad"Name'}, "mailbox"),
        ({"smtp_port": 0}, "smtp_port"),
        ({"imap_user": "x"}, "imap_user"),
        ({"max_replies_per_hour": 0}, "max_replies_per_hour"),
    ],
)
def test_settings_mistakes_name_the_key(change: dict[str, object], key: str) -> None:
    from channels.email import EmailChannel

    with pytest.raises(ConfigError, match=rf"channels\.mail\.{key}"):
        EmailChannel.validate("mail", {**BASE, **change})
