"""What reaches the agent out of a mail body: the new text in any language, forwards, charsets, parts.

The real-world corpus (``test_email_realworld.py``) runs whole mails through the gateway; these are
the rules a user expects, one by one, without servers.
"""

# Cyrillic and full-width punctuation are the point of these samples.
# ruff: noqa: RUF001

from __future__ import annotations

from email.message import EmailMessage

import pytest

from channels.email.inbound import question_text
from channels.email.parse import parse_mail
from channels.email.text import html_to_text, mail_text
from tests.fakes.mailserver import make_mail


def plain(body: str, subject: str = "Re: Question") -> str:
    return mail_text(body, html=False, subject=subject)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Swedish Gmail
        ("Tack, det passar bra.\n\nDen tis 5 apr. 2022 kl. 20:42 skrev Anna Svensson <anna@example.se>:\n\n> Hej!\n",
         "Tack, det passar bra."),
        ("Tack!\n\nons 4 dec. 2024 kl. 20:42 skrev Person B <person.b@example.com>:\n\n> Hej\n", "Tack!"),
        # German Gmail
        ("Danke!\n\nAm So., 1. Jan. 2023 um 17:22 Uhr schrieb Max Muster <max@example.de>:\n> Hallo\n", "Danke!"),
        # Japanese Gmail
        ("ありがとうございます。\n\n2022年1月1日(金) 9:00 田中太郎 <taro@example.jp>:\n> こんにちは\n",
         "ありがとうございます。"),
        # Russian: Gmail and Android
        ("Спасибо!\n\nср, 30 апр. 2025 г. в 15:19, Иван <ivan@example.ru>:\n\n> Привет\n", "Спасибо!"),
        ('Спасибо!\n02.04.2012 14:20 пользователь "Иван" <\nivan@example.ru> написал:\n\n> Привет\n', "Спасибо!"),
        # Yahoo
        ("Sure, Friday works.\n\n--- On Wed, 4/4/12, Bob <bob@example.com> wrote:\n\nFrom: Bob <bob@example.com>\n"
         "Subject: Booking\n\nOld text", "Sure, Friday works."),
        # English attribution wrapped over three lines
        ("Yes, that fixed it.\n\nOn Dec 16, 2011, at 12:47 PM, Corey Donohoe\n<reply@example.com>\nwrote:\n\n> old\n",
         "Yes, that fixed it."),
        # Outlook header blocks in other languages
        ("Ja takk.\n\nFra: Ola Nordmann <ola@example.no>\nSendt: mandag 3. januar 2022 10:00\nTil: Bot\n"
         "Emne: Spørsmål\n\nGammel tekst", "Ja takk."),
        ("Да, подходит.\n\n________________________________\nОт: Иван <ivan@example.ru>\n"
         "Отправлено: 3 января 2022 г. 10:00\nКому: Bot\nТема: Вопрос\n\nСтарый текст", "Да, подходит."),
        ("Da.\n\n-----Ursprüngliche Nachricht-----\nVon: Max\nGesendet: Montag\nAn: Bot\nBetreff: x\n\nalt", "Da."),
        # a sentence that merely starts like a mobile footer is kept
        ("Here is another email\n\nSent from my desk, is much easier then my mobile phone.",
         "Here is another email\n\nSent from my desk, is much easier then my mobile phone."),
        ("Where is my parcel?\n\nSent from my iPhone", "Where is my parcel?"),
        ("Where is my parcel?\n\nGet Outlook for iOS<https://aka.ms/o0ukef>", "Where is my parcel?"),
        ("Where is my parcel?\n\n-- \nAlice Example\nACME Corp", "Where is my parcel?"),
        # inline answers between quoted lines
        ("> Which size?\nLarge\n> Which colour?\nBlue\n", "Large\nBlue"),
        # text that merely mentions writing is kept
        ("On Monday my colleague wrote: the invoice is wrong.\nCan you check?",
         "On Monday my colleague wrote: the invoice is wrong.\nCan you check?"),
    ],
)
def test_only_the_new_text_reaches_the_agent(body: str, expected: str) -> None:
    assert plain(body) == expected


def test_a_reply_written_below_the_quote_is_sent() -> None:
    body = ("Hi,\nOn Mon, Jan 1, 2024 at 10:00 AM Bot <bot@example.test> wrote:\n> We ship to Norway.\n"
            "> Anything else?\n\nAnd to Sweden? We need it by Friday.\n")
    assert plain(body) == "Hi,\n\nAnd to Sweden? We need it by Friday."
    assert plain("On Mon, Jan 1, 2024, Bot wrote:\n> We ship.\n\nAnd to Sweden?\n") == "And to Sweden?"
    # an attribution no library knows, then the answer right below the quote
    assert plain("ср, 30 апр. 2025 г. в 15:19, Иван <ivan@example.ru>:\n> Привет\nОтвет ниже.\n") == "Ответ ниже."
    # a short answer above the quote is the answer; a footer below the quote is not
    assert plain("Yes, please do.\n\nOn Mon, Jan 1, 2024, Bot wrote:\n> Shall we?\n\nACME Corp | Oslo\n") == (
        "Yes, please do.")


def test_a_forward_sends_the_forwarded_content_with_a_line_saying_so() -> None:
    body = ("Can you help with this one?\n\n---------- Forwarded message ---------\nFrom: Carol <carol@example.com>\n"
            "Date: Mon, 1 Jan 2024 at 10:00\nSubject: Invoice 42\nTo: Alice <alice@example.org>\n\n"
            "Please pay invoice 42 by Friday.\n")
    text = plain(body, subject="Fwd: Invoice 42")
    assert text.startswith("Can you help with this one?\n\n---- Forwarded message (from: Carol <carol@example.com>")
    assert text.endswith("Please pay invoice 42 by Friday.")
    # Forwarded without a word of one's own: the forwarded mail is the question.
    html = ('<div dir="ltr"><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">---------- Forwarded '
            "message ---------<br>From: Carol &lt;carol@example.com&gt;<br>Subject: Invoice 42<br></div><br>"
            "<div>Please pay invoice 42.</div></div></div>")
    text = mail_text(html, html=True, subject="Fwd: Invoice 42")
    assert text.startswith("---- Forwarded message") and text.endswith("Please pay invoice 42.")


def test_an_outlook_reply_is_not_mistaken_for_a_forward() -> None:
    body = "Thanks, done.\n\nFrom: Bot <bot@example.test>\nSent: Monday\nTo: Alice\nSubject: Re: x\n\nOld answer"
    assert plain(body, subject="RE: x") == "Thanks, done."


def test_html_cut_marks_of_the_clients() -> None:
    hotmail = ('<div dir="ltr">Hi. I am fine.<br><br><hr id="stopSpelling">Date: Thu, 26 Jun 2014<br>'
               "Subject: Test<br>From: abc@example.com<br><br>Hello! How are you?</div>")
    assert mail_text(hotmail, html=True) == "Hi. I am fine."
    gmail = ('<div dir="ltr">Is it in stock?<br clear="all"><br>-- <br><div class="gmail_signature">'
             "<div>Alice Example | ACME Corp</div></div></div>")
    assert mail_text(gmail, html=True) == "Is it in stock?"
    outlook = ('<div class="WordSection1"><p>Yes.</p><div><div style="border:none;border-top:solid #E1E1E1 1.0pt;'
               'padding:3.0pt 0in 0in 0in"><p><b>Von:</b> Max<br><b>Gesendet:</b> Montag<br><b>An:</b> Bot</p>'
               "</div></div><p>Old text</p></div>")
    assert mail_text(outlook, html=True) == "Yes."


def test_html_becomes_readable_text() -> None:
    html = (
        "<html><head><title>t</title><style>p{color:red}</style><script>x()</script></head><body>"
        "<p>Hello&nbsp;<b>team</b>,</p><p>see <a href='https://example.org/a'>this page</a><br>and</p>"
        "<ul><li>one</li><li>two</li></ul><img alt='[logo]' src='cid:x'>"
        "<blockquote type='cite'>quoted <p>old</p></blockquote>"
        "<div class='gmail_quote'>On Mon wrote: <div>older</div></div><p>Bye &amp; thanks</p></body></html>"
    )
    assert html_to_text(html) == (
        "Hello team,\n\nsee this page (https://example.org/a)\nand\n\n- one\n- two\n\n[logo]\n\nBye & thanks"
    )
    assert "text" in html_to_text("<div><p>text</span></blockquote><b>")
    # Outlook and Hotmail start some bodies with an XML declaration naming another encoding.
    declared = '<?xml version="1.0" encoding="iso-8859-1"?><html><body><p>Grüße</p><p>aus Köln</p></body></html>'
    assert html_to_text(declared) == "Grüße\n\naus Köln"
    assert html_to_text("") == "" and html_to_text("   ") == ""


def raw_mail(content_type: str, body: bytes) -> bytes:
    return (b"From: Alice <alice@example.org>\r\nTo: bot@example.test\r\nSubject: Hours\r\n"
            b"In-Reply-To: <x@example.org>\r\nContent-Type: " + content_type.encode() + b"\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        # declared Big5, bytes are UTF-8
        ("text/plain; charset=Big5", "你好，請問營業時間？".encode(), "你好，請問營業時間？"),
        # declared UTF-8, bytes are Windows-1252 (curly quotes, euro sign)
        ("text/plain; charset=utf-8", b"\x93Deluxe\x94 costs 5 \x80?", "\u201cDeluxe\u201d costs 5 \u20ac?"),
        # declared and right
        ("text/plain; charset=iso-8859-1", b"Caf\xe9 au lait?", "Café au lait?"),
        ("text/plain; charset=shift_jis", "営業時間は？".encode("shift_jis"), "営業時間は？"),
    ],
)
def test_charset_falls_back_before_accepting_replacement_characters(
    content_type: str, body: bytes, expected: str
) -> None:
    assert parse_mail(raw_mail(content_type, body)).body == expected


def test_text_after_an_inline_photo_is_part_of_the_message() -> None:
    # iPhone Mail: text, the photo inline, then the rest of the text in a second text/plain part.
    mail = make_mail("Look at this crack in the kettle:", in_reply_to="<x@example.org>")
    mail.add_attachment(b"\xff\xd8\xff\xe0 jpeg", maintype="image", subtype="jpeg", filename="IMG_0001.jpeg",
                        disposition="inline")
    rest = EmailMessage()
    rest.set_content("Is it covered by the warranty?\n\nSent from my iPhone")
    mail.attach(rest)
    notes = EmailMessage()
    notes.set_content("not meant to be read inline")
    notes.add_header("Content-Disposition", "attachment", filename="notes.txt")
    mail.attach(notes)
    parsed = parse_mail(mail.as_bytes())
    assert parsed.body == "Look at this crack in the kettle:\n\nIs it covered by the warranty?"
    assert parsed.attachments == ("IMG_0001.jpeg", "notes.txt")
    assert question_text(parsed).endswith("(Attachments not included: IMG_0001.jpeg, notes.txt)")
