"""Twilio channels through a real gateway and the Chatbase emulator, with a fake Twilio REST API."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from adapters.emulator.brain import MARKDOWN_SAMPLE, long_text
from gateway.markdown import to_plain
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, call_params, message_params

USER = "+15551230001"
OTHER = "+15551230002"
BOT = "+15557654321"
WA_USER, WA_BOT = f"whatsapp:{USER}", "whatsapp:+14155238886"


@asynccontextmanager
async def gateway(twilio: FakeTwilio, **voice: Any) -> AsyncIterator[tuple[GatewayUnderTest, aiohttp.ClientSession]]:
    creds = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
    channels = {
        "sms": {"type": "twilio-sms", "from": BOT, "api_base": twilio.url, **creds},
        "wa": {"type": "twilio-whatsapp", "from": WA_BOT, "api_base": twilio.url, **creds},
        "phone": {"type": "twilio-voice", "language": "en-US", "voice": "Polly.Joanna", **creds, **voice},
    }
    async with running_gateway(channels) as gw, aiohttp.ClientSession() as http:
        yield gw, http


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


def agent_messages(gw: GatewayUnderTest) -> list[str]:
    """The user messages the agent received, in order."""
    return [r.json["message"] for r in gw.emulator.requests
            if r.path.endswith("/chat") and isinstance(r.json, dict) and r.json.get("message")]


def metric(gw: GatewayUnderTest, name: str, **labels: str) -> float:
    return gw.services.metrics.registry.get_sample_value(name, labels) or 0.0


async def sms(gw: GatewayUnderTest, http: aiohttp.ClientSession, twilio: FakeTwilio, text: str, sid: str,
              sender: str = USER) -> int:
    status, body, ctype = await twilio.post(http, f"{gw.url}/webhooks/sms",
                                            message_params(text, sender, BOT, sid))
    if status == 200:
        assert ctype == "text/xml" and "<Response" in body
    return status


async def test_sms_conversation_per_number(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        assert await sms(gw, http, twilio, "hello", "SM1") == 200
        await gw.idle()
        assert await sms(gw, http, twilio, "again", "SM2") == 200
        assert await sms(gw, http, twilio, "hi", "SM3", sender=OTHER) == 200
        await gw.idle()
    assert twilio.bodies(USER) == ['You said: "hello". This is message 1 of this conversation.',
                                   'You said: "again". This is message 2 of this conversation.']
    assert twilio.bodies(OTHER) == ['You said: "hi". This is message 1 of this conversation.']
    assert {m["From"] for m in twilio.messages} == {BOT}


async def test_forged_sms_is_refused_and_never_reaches_the_agent(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        params = message_params("hello", USER, BOT, "SM1")
        status, _, _ = await twilio.post(http, f"{gw.url}/webhooks/sms", params, signature="Zm9yZ2Vk")
        assert status == 403
        await gw.idle()
        assert metric(gw, "switchboard_webhook_rejected_total", channel="sms", status="403") == 1
        assert agent_messages(gw) == []
    assert twilio.messages == []


async def test_retries_of_one_message_sid_are_answered_once(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        for _ in range(3):
            assert await sms(gw, http, twilio, "hello", "SM1") == 200
        await gw.idle()
        assert await sms(gw, http, twilio, "hello", "SM1") == 200  # a late redelivery too
        await gw.idle()
        assert agent_messages(gw) == ["hello"]
    assert len(twilio.messages) == 1


async def test_opt_out_keyword_never_reaches_the_agent(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        assert await sms(gw, http, twilio, "STOP", "SM1") == 200
        await gw.idle()
        assert agent_messages(gw) == []
    assert twilio.messages == []


async def test_long_5000_answer_is_split_in_order_with_nothing_lost(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        await sms(gw, http, twilio, "long 5000", "SM1")
        await gw.idle()
    bodies = twilio.bodies(USER)
    n = len(bodies)
    assert 4 <= n <= 5  # ~5,000 characters in parts of at most 1,600
    assert all(len(b) <= 1600 for b in bodies)
    assert [b.split(" ", 1)[0] for b in bodies] == [f"({i}/{n})" for i in range(1, n + 1)]
    expected = to_plain(long_text(5000))
    rejoined = " ".join(b.split(" ", 1)[1] for b in bodies)
    assert rejoined.split() == expected.split()
    assert all(b.endswith("of the long answer.") for b in bodies)  # cut between sentences


async def test_whatsapp_markdown_uses_whatsapp_styles(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        params = message_params("show me markdown", WA_USER, WA_BOT, "SM1", ProfileName="Ada", WaId=USER[1:])
        status, _, _ = await twilio.post(http, f"{gw.url}/webhooks/wa", params)
        assert status == 200
        await gw.idle()
    [sent] = twilio.messages
    assert (sent["To"], sent["From"]) == (WA_USER, WA_BOT)
    body = sent["Body"]
    assert "*bold*" in body and "**" not in body
    assert "_italic_" in body and "~strike~" in body and "~~" not in body
    assert "```" in body  # monospace block kept
    assert "https://example.com" in body and "](" not in body
    assert "1 < 2 > 0 & done." in body  # no HTML escaping on WhatsApp
    assert "#" not in body.split("\n", 1)[0]
    assert MARKDOWN_SAMPLE.startswith("# Markdown sample")


async def test_media_message_reaches_the_agent_as_links(twilio: FakeTwilio) -> None:
    photo = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME1"
    async with gateway(twilio) as (gw, http):
        params = message_params("Is this damaged?", WA_USER, WA_BOT, "MM1", media=[(photo, "image/jpeg")])
        assert (await twilio.post(http, f"{gw.url}/webhooks/wa", params))[0] == 200
        params = message_params("", WA_USER, WA_BOT, "MM2", media=[(photo + "2", "audio/ogg")])
        assert (await twilio.post(http, f"{gw.url}/webhooks/wa", params))[0] == 200
        await gw.idle()
        first, second = agent_messages(gw)
    assert first.startswith("Is this damaged?") and photo in first and "image/jpeg" in first
    assert photo + "2" in second and "audio/ogg" in second
    assert AUTH_TOKEN not in first + second  # Twilio's media URLs carry no credential
    assert len(twilio.bodies(WA_USER)) == 2  # both answered, the media-only one too


async def test_whatsapp_window_closed_is_counted_once_and_not_retried(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        twilio.fail_next(400, 63016, message="Failed to send freeform message because you are outside "
                         "the allowed window.")
        await twilio.post(http, f"{gw.url}/webhooks/wa", message_params("hello", WA_USER, WA_BOT, "SM1"))
        await gw.idle()
        assert metric(gw, "switchboard_delivery_failures_total", channel="wa",
                      reason="WhatsAppWindowClosed") == 1
    assert len(twilio.requests) == 1  # one attempt, no retry loop
    assert twilio.messages == []


async def test_rate_limit_and_server_errors_are_retried(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        twilio.fail_next(429, 20429, retry_after=0.05)
        twilio.fail_next(503)
        await sms(gw, http, twilio, "hello", "SM1")
        await gw.idle(timeout=15)
        assert agent_messages(gw) == ["hello"]  # the answer was kept, only delivery retried
    assert [ok for *_, ok in twilio.requests] == [False, False, True]
    assert twilio.bodies(USER) == ['You said: "hello". This is message 1 of this conversation.']


async def test_bad_number_is_not_retried(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        twilio.fail_next(400, 21211, message="Invalid 'To' Phone Number")
        await sms(gw, http, twilio, "hello", "SM1")
        await gw.idle()
        assert metric(gw, "switchboard_delivery_failures_total", channel="sms", reason="TwilioRejected") == 1
    assert len(twilio.requests) == 1


# -- voice -----------------------------------------------------------------------------------------
class Caller:
    def __init__(self, gw: GatewayUnderTest, http: aiohttp.ClientSession, twilio: FakeTwilio,
                 call_sid: str) -> None:
        self.gw, self.http, self.twilio, self.call_sid = gw, http, twilio, call_sid
        self.requests = 0

    async def post(self, url: str, **extra: str) -> ET.Element:
        self.requests += 1
        status, body, ctype = await self.twilio.post(self.http, url, call_params(self.call_sid, USER, **extra))
        assert (status, ctype) == (200, "text/xml"), body
        return ET.fromstring(body)

    async def speak(self, twiml: ET.Element, speech: str) -> tuple[list[str], ET.Element]:
        """Say ``speech`` into the current ``<Gather>`` and follow Twilio until it listens again."""
        gather = twiml.find("Gather")
        assert gather is not None
        twiml = await self.post(gather.attrib["action"], SpeechResult=speech, Confidence="0.9")
        said = [s.text or "" for s in twiml.iter("Say")]
        while twiml.find("Gather") is None:
            assert self.requests < 100
            target = twiml.find("Redirect")
            assert target is not None and target.text
            twiml = await self.post(target.text)
            said += [s.text or "" for s in twiml.iter("Say")]
        return said, twiml


async def test_voice_call_is_one_conversation(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        call = Caller(gw, http, twilio, "CA1")
        twiml = await call.post(f"{gw.url}/webhooks/phone")
        said, twiml = await call.speak(twiml, "hello there")
        assert said == ['You said: "hello there". This is message 1 of this conversation.']
        said, twiml = await call.speak(twiml, "and again")
        assert said == ['You said: "and again". This is message 2 of this conversation.']
        other = Caller(gw, http, twilio, "CA2")  # same number, new call: new conversation
        said, _ = await other.speak(await other.post(f"{gw.url}/webhooks/phone"), "hi")
        assert said == ['You said: "hi". This is message 1 of this conversation.']
    assert twilio.messages == []  # voice answers are spoken, never texted


async def test_voice_markdown_is_made_speakable(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        call = Caller(gw, http, twilio, "CA1")
        said, _ = await call.speak(await call.post(f"{gw.url}/webhooks/phone"), "markdown please")
    spoken = " ".join(said)
    assert "bold" in spoken and "**" not in spoken and "#" not in spoken
    assert "https://" not in spoken and "```" not in spoken


async def test_slow_agent_keeps_the_call_alive_until_the_answer(twilio: FakeTwilio) -> None:
    async with gateway(twilio, answer_budget=0.3) as (gw, http):
        gw.emulator.faults.latency = 1.2  # the agent takes longer than one webhook may wait
        call = Caller(gw, http, twilio, "CA1")
        greeting = await call.post(f"{gw.url}/webhooks/phone")
        gather = greeting.find("Gather")
        assert gather is not None
        first = await call.post(gather.attrib["action"], SpeechResult="are you there", Confidence="0.9")
        assert [s.text for s in first.iter("Say")] == ["One moment, please."]
        assert first.find("Pause") is not None
        redirect = first.find("Redirect")
        assert redirect is not None and "/webhooks/phone/continue" in (redirect.text or "")
        said, twiml = await call.speak(greeting, "are you there")  # Twilio retried: same turn
        assert said[-1] == 'You said: "are you there". This is message 1 of this conversation.'
        assert twiml.find("Gather") is not None
        assert agent_messages(gw) == ["are you there"]


async def test_streamed_long_answer_starts_early_and_loses_nothing(twilio: FakeTwilio) -> None:
    async with gateway(twilio, answer_budget=0.5) as (gw, http):
        gw.emulator.faults.token_delay = 0.01
        call = Caller(gw, http, twilio, "CA1")
        said, _ = await call.speak(await call.post(f"{gw.url}/webhooks/phone"), "long 600")
    fillers = {"One moment, please.", "Still working on it."}
    spoken = [s for s in said if s not in fillers]
    assert len(spoken) > 1  # spoken in several pieces while streaming
    assert " ".join(spoken).split() == long_text(600).split()


async def test_silence_then_goodbye_on_a_real_gateway(twilio: FakeTwilio) -> None:
    async with gateway(twilio) as (gw, http):
        call = Caller(gw, http, twilio, "CA1")
        twiml = await call.post(f"{gw.url}/webhooks/phone")
        for _ in range(2):
            redirect = twiml.find("Redirect")
            assert redirect is not None and redirect.text
            twiml = await call.post(redirect.text)
        assert twiml.find("Hangup") is not None
        assert "goodbye" in " ".join(s.text or "" for s in twiml.iter("Say"))
        forged = call_params("CA1", USER)
        status, _, _ = await twilio.post(http, f"{gw.url}/webhooks/phone/gather?step=1", forged, signature="x")
        assert status == 403
        assert agent_messages(gw) == []
