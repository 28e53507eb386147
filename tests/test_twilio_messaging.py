"""Twilio SMS/WhatsApp channel alone: signatures, parsing, sending and errors against a fake Twilio."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import pytest

from channels.twilio import TwilioSmsChannel, TwilioWhatsAppChannel
from channels.twilio.rest import WhatsAppWindowClosed
from gateway.channel import Answer, Progress
from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited
from gateway.events import Identity
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, StubGateway, message_params

USER = "+15551230001"
BOT = "+15557654321"
PROXY_URL = "https://bot.example.com"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


def config(twilio: FakeTwilio, kind: str = "twilio-sms", sender: str = BOT) -> dict[str, str]:
    return {"type": kind, "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": sender,
            "api_base": twilio.url}


@pytest.fixture
async def sms(twilio: FakeTwilio) -> AsyncIterator[StubGateway]:
    async with StubGateway(TwilioSmsChannel, "sms", config(twilio)) as gw:
        yield gw


@pytest.fixture
async def whatsapp(twilio: FakeTwilio) -> AsyncIterator[StubGateway]:
    async with StubGateway(TwilioWhatsAppChannel, "wa", config(twilio, "twilio-whatsapp")) as gw:
        yield gw


def metric(gw: StubGateway, name: str, **labels: str) -> float:
    return gw.services.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_signed_message_is_acked_with_empty_twiml_and_recorded(sms: StubGateway, twilio: FakeTwilio) -> None:
    status, body, ctype = await twilio.post(sms.http, f"{sms.url}/webhooks/sms",
                                            message_params("Hi there", USER, BOT, "SM1"))
    assert (status, ctype) == (200, "text/xml")
    assert re.fullmatch(r'<\?xml version="1.0" encoding="UTF-8"\?><Response\s*/>', body)
    [event] = sms.services.accepted
    assert (event.key, event.scope, event.text) == ("SM1", USER, "Hi there")
    assert event.identity == Identity("twilio-sms", "", USER)
    assert twilio.messages == []  # the answer goes out later, through the REST API


@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl", "forged"])
async def test_forged_or_missing_signature_is_refused(sms: StubGateway, twilio: FakeTwilio,
                                                      signature: str) -> None:
    status, _, _ = await twilio.post(sms.http, f"{sms.url}/webhooks/sms",
                                     message_params("Hi", USER, BOT, "SM1"), signature=signature)
    assert status == 403
    assert sms.services.accepted == []


async def test_signature_of_other_params_or_token_is_refused(sms: StubGateway, twilio: FakeTwilio) -> None:
    url = f"{sms.url}/webhooks/sms"
    signed = twilio.sign(url, message_params("Hi", USER, BOT, "SM1"))
    status, _, _ = await twilio.post(sms.http, url, message_params("Send me money", USER, BOT, "SM1"),
                                     signature=signed)
    assert status == 403
    other = FakeTwilio(auth_token="another-token")
    status, _, _ = await twilio.post(sms.http, url, message_params("Hi", USER, BOT, "SM1"),
                                     signature=other.sign(url, message_params("Hi", USER, BOT, "SM1")))
    assert status == 403
    assert sms.services.accepted == []


async def test_behind_a_tls_proxy_the_public_url_is_what_is_signed(twilio: FakeTwilio) -> None:
    async with StubGateway(TwilioSmsChannel, "sms", config(twilio), public_url=PROXY_URL) as gw:
        local = f"{gw.local_url}/webhooks/sms?x=1"
        params = message_params("Hi", USER, BOT, "SM1")
        # Twilio signs the https URL from its console; the gateway sees plain http on another host.
        status, _, _ = await twilio.post(gw.http, local, params, signed_url=f"{PROXY_URL}/webhooks/sms?x=1")
        assert status == 200
        status, _, _ = await twilio.post(gw.http, local, message_params("Hi", USER, BOT, "SM2"))
        assert status == 403
        assert [e.key for e in gw.services.accepted] == ["SM1"]


async def test_webhook_for_another_account_is_refused(sms: StubGateway, twilio: FakeTwilio) -> None:
    params = message_params("Hi", USER, BOT, "SM1", AccountSid="AC" + "f" * 32)
    status, _, _ = await twilio.post(sms.http, f"{sms.url}/webhooks/sms", params)
    assert status == 403


async def test_malformed_signed_body_is_400_not_500(sms: StubGateway, twilio: FakeTwilio) -> None:
    status, _, _ = await twilio.post(sms.http, f"{sms.url}/webhooks/sms", {"Body": "no sid"})
    assert status == 400


@pytest.mark.parametrize("keyword", ["STOP", "stop", " Unsubscribe ", "START", "help", "Info"])
async def test_opt_out_keywords_are_left_to_twilio(sms: StubGateway, twilio: FakeTwilio, keyword: str) -> None:
    status, body, _ = await twilio.post(sms.http, f"{sms.url}/webhooks/sms",
                                        message_params(keyword, USER, BOT, "SM1"))
    assert status == 200 and "<Response" in body
    assert sms.services.accepted == []


async def test_words_that_only_contain_a_keyword_reach_the_agent(sms: StubGateway, twilio: FakeTwilio) -> None:
    for i, text in enumerate(["yes", "please stop the order", "Help me with order 1234"]):
        await twilio.post(sms.http, f"{sms.url}/webhooks/sms", message_params(text, USER, BOT, f"SM{i}"))
    assert [e.text for e in sms.services.accepted] == ["yes", "please stop the order", "Help me with order 1234"]


async def test_media_is_described_to_the_agent_as_links(whatsapp: StubGateway, twilio: FakeTwilio) -> None:
    media = [("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1", "image/jpeg"),
             ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2", "application/pdf")]
    url = f"{whatsapp.url}/webhooks/wa"
    await twilio.post(whatsapp.http, url, message_params("What is this?", f"whatsapp:{USER}",
                                                         f"whatsapp:{BOT}", "MM1", media=media,
                                                         ProfileName="Ada", WaId=USER[1:]))
    await twilio.post(whatsapp.http, url, message_params("", f"whatsapp:{USER}", f"whatsapp:{BOT}", "MM2",
                                                         media=media[:1]))
    first, second = whatsapp.services.accepted
    assert first.text.startswith("What is this?")
    for link, ctype in media:
        assert link in first.text and ctype in first.text
    assert media[0][0] in second.text and "image/jpeg" in second.text
    assert first.identity == Identity("twilio-whatsapp", "", USER)  # no whatsapp: prefix
    assert first.scope == USER


async def test_odd_media_fields_never_crash(sms: StubGateway, twilio: FakeTwilio) -> None:
    url = f"{sms.url}/webhooks/sms"
    odd = message_params("", USER, BOT, "SM1", NumMedia="3")  # count without urls
    assert (await twilio.post(sms.http, url, odd))[0] == 200
    odd = message_params("hi", USER, BOT, "SM2", NumMedia="lots")
    assert (await twilio.post(sms.http, url, odd))[0] == 200
    assert [e.text for e in sms.services.accepted] == ["hi"]


async def test_sms_reply_goes_through_the_messages_api(sms: StubGateway, twilio: FakeTwilio) -> None:
    await twilio.post(sms.http, f"{sms.url}/webhooks/sms", message_params("Hi", USER, BOT, "SM1"))
    [event] = sms.services.accepted
    await sms.channel.open_reply(event, Progress()).finish(Answer("**Hello** see [docs](https://x.io/d)"))
    [sent] = twilio.messages
    assert (sent["To"], sent["From"]) == (USER, BOT)
    assert "**" not in sent["Body"] and "Hello" in sent["Body"] and "https://x.io/d" in sent["Body"]
    assert sent["StatusCallback"] == f"{sms.url}/webhooks/sms/status"


async def test_whatsapp_reply_uses_whatsapp_addresses_and_styles(whatsapp: StubGateway,
                                                                 twilio: FakeTwilio) -> None:
    await twilio.post(whatsapp.http, f"{whatsapp.url}/webhooks/wa",
                      message_params("markdown", f"whatsapp:{USER}", f"whatsapp:{BOT}", "SM1"))
    [event] = whatsapp.services.accepted
    md = "# Title\n\n**bold** and *italic* and ~~gone~~ and `code`\n\n- [link](https://x.io)"
    await whatsapp.channel.open_reply(event, Progress()).finish(Answer(md))
    [sent] = twilio.messages
    assert (sent["To"], sent["From"]) == (f"whatsapp:{USER}", f"whatsapp:{BOT}")
    body = sent["Body"]
    assert "*bold*" in body and "**" not in body
    assert "_italic_" in body and "~gone~" in body and "~~" not in body
    assert "https://x.io" in body and "](" not in body


def words(text: str) -> list[str]:
    return text.split()


async def test_long_answer_is_split_in_order_with_nothing_lost(sms: StubGateway, twilio: FakeTwilio) -> None:
    from gateway.markdown import to_plain

    paragraphs = [" ".join(f"Sentence {p}.{s} talks about item {p * 10 + s}." for s in range(12))
                  for p in range(14)]
    answer = "\n\n".join(paragraphs)
    assert len(answer) > 5000
    await twilio.post(sms.http, f"{sms.url}/webhooks/sms", message_params("long", USER, BOT, "SM1"))
    [event] = sms.services.accepted
    await sms.channel.open_reply(event, Progress()).finish(Answer(answer))
    bodies = twilio.bodies()
    n = len(bodies)
    assert n >= 4
    assert all(len(b) <= 1600 for b in bodies)
    assert [b[: len(f"({i}/{n}) ")] for i, b in enumerate(bodies, 1)] == [f"({i}/{n}) " for i in range(1, n + 1)]
    rejoined = " ".join(b.split(" ", 1)[1] for b in bodies)
    assert words(rejoined) == words(to_plain(answer))
    # cut at sentence ends, never inside one
    assert all(b.rstrip().endswith(".") for b in bodies)


async def test_short_answer_is_not_numbered(sms: StubGateway, twilio: FakeTwilio) -> None:
    await twilio.post(sms.http, f"{sms.url}/webhooks/sms", message_params("hi", USER, BOT, "SM1"))
    await sms.channel.open_reply(sms.services.accepted[0], Progress()).finish(Answer("Just one part."))
    assert twilio.bodies() == ["Just one part."]


async def test_resumed_reply_sends_only_missing_parts(sms: StubGateway, twilio: FakeTwilio) -> None:
    await twilio.post(sms.http, f"{sms.url}/webhooks/sms", message_params("hi", USER, BOT, "SM1"))
    answer = Answer("\n\n".join(f"Paragraph {i}. " + "word " * 300 for i in range(3)))
    await sms.channel.open_reply(sms.services.accepted[0], Progress({"parts_sent": 1})).finish(answer)
    assert [b[:5] for b in twilio.bodies()] == ["(2/3)", "(3/3)"]


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(429, 20429, ChannelRateLimited), (500, 20500, ChannelError), (503, None, ChannelError)],
)
async def test_retryable_rest_errors(sms: StubGateway, twilio: FakeTwilio, status: int, code: int | None,
                                     error: type[Exception]) -> None:
    await twilio.post(sms.http, f"{sms.url}/webhooks/sms", message_params("hi", USER, BOT, "SM1"))
    twilio.fail_next(status, code, retry_after=7 if status == 429 else None)
    with pytest.raises(error) as info:
        await sms.channel.send_text(sms.services.accepted[0], "answer")
    assert not isinstance(info.value, ChannelPermanentError)
    if status == 429:
        assert info.value.retry_after == 7  # type: ignore[attr-defined]
    await sms.channel.send_text(sms.services.accepted[0], "answer")  # the retry goes through
    assert twilio.bodies() == ["answer"]


async def test_bad_number_is_permanent_and_counted(sms: StubGateway, twilio: FakeTwilio) -> None:
    await twilio.post(sms.http, f"{sms.url}/webhooks/sms", message_params("hi", USER, BOT, "SM1"))
    twilio.fail_next(400, 21211, message="The 'To' number is not a valid phone number.")
    with pytest.raises(ChannelPermanentError) as info:
        await sms.channel.send_text(sms.services.accepted[0], "answer")
    assert "21211" in str(info.value)
    assert not isinstance(info.value, WhatsAppWindowClosed)


async def test_whatsapp_window_closed_is_permanent_logged_and_counted(
    whatsapp: StubGateway, twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    await twilio.post(whatsapp.http, f"{whatsapp.url}/webhooks/wa",
                      message_params("hi", f"whatsapp:{USER}", f"whatsapp:{BOT}", "SM1"))
    twilio.fail_next(400, 63016, message="Failed to send freeform message because you are outside the "
                     "allowed window.")
    with caplog.at_level(logging.WARNING), pytest.raises(WhatsAppWindowClosed) as info:
        await whatsapp.channel.send_text(whatsapp.services.accepted[0], "late answer")
    assert isinstance(info.value, ChannelPermanentError)  # the core never retries it
    assert "24-hour window" in caplog.text and f"whatsapp:{USER}" in caplog.text
    assert twilio.messages == []


async def test_status_callback_reports_window_failure(whatsapp: StubGateway, twilio: FakeTwilio,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    url = f"{whatsapp.url}/webhooks/wa/status"
    report = {"MessageSid": "SM9", "AccountSid": ACCOUNT_SID, "MessageStatus": "undelivered",
              "ErrorCode": "63016", "To": f"whatsapp:{USER}", "From": f"whatsapp:{BOT}"}
    assert (await twilio.post(whatsapp.http, url, report, signature="forged"))[0] == 403
    with caplog.at_level(logging.WARNING):
        status, _, _ = await twilio.post(whatsapp.http, url, report)
        await twilio.post(whatsapp.http, url, {**report, "MessageStatus": "delivered", "ErrorCode": ""})
    assert status == 200
    assert "24-hour window" in caplog.text
    assert metric(whatsapp, "switchboard_delivery_failures_total", channel="wa",
                  reason="WhatsAppWindowClosed") == 1
    assert whatsapp.services.accepted == []


async def test_status_report_on_the_main_url_is_not_a_message(whatsapp: StubGateway, twilio: FakeTwilio) -> None:
    report = {"MessageSid": "SM9", "AccountSid": ACCOUNT_SID, "MessageStatus": "failed", "ErrorCode": "63016",
              "To": f"whatsapp:{USER}", "From": f"whatsapp:{BOT}", "SmsStatus": "failed"}
    status, _, _ = await twilio.post(whatsapp.http, f"{whatsapp.url}/webhooks/wa", report)
    assert status == 200
    assert whatsapp.services.accepted == []
    assert metric(whatsapp, "switchboard_delivery_failures_total", channel="wa",
                  reason="WhatsAppWindowClosed") == 1


def test_settings_reject_unknown_keys_and_need_credentials() -> None:
    from gateway.errors import ConfigError

    good = {"type": "twilio-sms", "account_sid": ACCOUNT_SID, "auth_token": "t", "from": BOT}
    assert TwilioSmsChannel.validate("sms", good).api_base == "https://api.twilio.com"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"channels\.sms\.colour: unknown key"):
        TwilioSmsChannel.validate("sms", {**good, "colour": "red"})
    with pytest.raises(ConfigError, match=r"channels\.sms\.auth_token: required"):
        TwilioSmsChannel.validate("sms", {k: v for k, v in good.items() if k != "auth_token"})
    with pytest.raises(ConfigError, match=r"channels\.sms\.api_base"):
        TwilioSmsChannel.validate("sms", {**good, "api_base": "ftp://nope"})
