"""Twilio Voice channel alone: TwiML flow, silence, slow and streaming answers (scripted agent)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from channels.twilio import TwilioVoiceChannel
from gateway.channel import Answer, Reply
from gateway.events import Identity, InboundEvent
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, StubGateway, call_params

CALL = "CA" + "1" * 32
CALLER = "+15551230001"
Turn = Callable[[InboundEvent, Reply], Awaitable[Answer | None]]


class Call:
    """Plays Twilio's part in one call: posts signed webhooks and follows the TwiML."""

    def __init__(self, gw: StubGateway, twilio: FakeTwilio, call_sid: str = CALL) -> None:
        self.gw, self.twilio, self.call_sid = gw, twilio, call_sid

    async def post(self, url: str, **extra: str) -> ET.Element:
        status, body, ctype = await self.twilio.post(self.gw.http, url, call_params(self.call_sid, CALLER,
                                                                                    **extra))
        assert (status, ctype) == (200, "text/xml"), body
        return ET.fromstring(body)

    async def start(self) -> ET.Element:
        return await self.post(f"{self.gw.url}/webhooks/voice")

    async def say(self, twiml: ET.Element, speech: str) -> ET.Element:
        """The caller speaks into the ``<Gather>`` of ``twiml``."""
        gather = twiml.find("Gather")
        assert gather is not None
        return await self.post(gather.attrib["action"], SpeechResult=speech, Confidence="0.92")

    async def silence(self, twiml: ET.Element) -> ET.Element:
        """Nothing said: Twilio falls through the ``<Gather>`` to the next verb, a redirect."""
        return await self.post(redirect(twiml))

    async def follow(self, twiml: ET.Element, limit: int = 200) -> tuple[list[str], ET.Element]:
        """Follow redirects until the next ``<Gather>``; returns every ``<Say>`` on the way."""
        said = says(twiml)
        while twiml.find("Gather") is None:
            limit -= 1
            assert limit > 0, "the call never came back to listening"
            twiml = await self.post(redirect(twiml))
            said += says(twiml)
        return said, twiml


def says(twiml: ET.Element) -> list[str]:
    return [el.text or "" for el in twiml.iter("Say")]


def redirect(twiml: ET.Element) -> str:
    el = twiml.find("Redirect")
    assert el is not None and el.text
    return el.text


def config(**extra: Any) -> dict[str, Any]:
    return {"type": "twilio-voice", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
            "language": "en-GB", "voice": "Polly.Amy", "answer_budget": 0.3, **extra}


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def gw() -> AsyncIterator[StubGateway]:
    async with StubGateway(TwilioVoiceChannel, "voice", config()) as gateway:
        yield gateway


def answering(text: str) -> Turn:
    async def turn(event: InboundEvent, reply: Reply) -> Answer:
        await reply.start()
        await reply.finish(Answer(text))
        return Answer(text)

    return turn


async def test_call_is_greeted_inside_a_speech_gather(gw: StubGateway, twilio: FakeTwilio) -> None:
    twiml = await Call(gw, twilio).start()
    gather = twiml.find("Gather")
    assert gather is not None
    assert gather.attrib["input"] == "speech"
    assert gather.attrib["speechTimeout"] == "auto"
    assert gather.attrib["language"] == "en-GB"
    assert gather.attrib["action"] == f"{gw.url}/webhooks/voice/gather?step=1"
    [say] = gather.findall("Say")
    assert say.attrib["voice"] == "Polly.Amy" and say.text == "Hello! How can I help you today?"
    assert redirect(twiml).startswith(f"{gw.url}/webhooks/voice/gather?")  # silence falls through


@pytest.mark.parametrize("path", ["", "/gather?step=1", "/continue?step=1"])
async def test_every_voice_url_checks_the_signature(gw: StubGateway, twilio: FakeTwilio, path: str) -> None:
    gw.services.turn = answering("never")
    params = call_params(CALL, CALLER, SpeechResult="hello")
    status, _, _ = await twilio.post(gw.http, f"{gw.url}/webhooks/voice{path}", params, signature="forged")
    assert status == 403
    other = FakeTwilio(auth_token="wrong")
    url = f"{gw.url}/webhooks/voice{path}"
    status, _, _ = await twilio.post(gw.http, url, params, signature=other.sign(url, params))
    assert status == 403
    assert gw.services.turns == []


async def test_gather_say_gather(gw: StubGateway, twilio: FakeTwilio) -> None:
    gw.services.turn = answering("Your order **1234** has shipped. Track it at [the site](https://x.io/t/1234).")
    call = Call(gw, twilio)
    said, twiml = await call.follow(await call.say(await call.start(), "where is my order"))
    spoken = " ".join(said)
    assert "Your order 1234 has shipped." in spoken
    assert "**" not in spoken and "https://" not in spoken and "](" not in spoken
    [event] = gw.services.turns
    assert (event.text, event.scope, event.key) == ("where is my order", CALL, f"{CALL}:1")
    assert event.identity == Identity("twilio-voice", "", CALLER)
    gather = twiml.find("Gather")
    assert gather is not None and gather.attrib["action"].endswith("/gather?step=2")
    # the second turn is the same call, so the same conversation
    gw.services.turn = answering("Anything else?")
    said, _ = await call.follow(await call.say(twiml, "thanks"))
    assert said == ["Anything else?"]
    assert [(e.key, e.conversation_key) for e in gw.services.turns] == [
        (f"{CALL}:1", f"voice:{CALL}"), (f"{CALL}:2", f"voice:{CALL}")]


async def test_silence_reprompts_once_then_says_goodbye(gw: StubGateway, twilio: FakeTwilio) -> None:
    call = Call(gw, twilio)
    twiml = await call.silence(await call.start())
    assert says(twiml) == ["Sorry, I didn't hear anything. What can I do for you?"]
    assert twiml.find("Gather") is not None and twiml.find("Hangup") is None
    twiml = await call.silence(twiml)
    assert says(twiml) == ["I'll hang up now. Thank you for calling, goodbye!"]
    assert twiml.find("Hangup") is not None and twiml.find("Gather") is None
    assert gw.services.turns == []


async def test_speech_after_a_reprompt_resets_the_silence_count(gw: StubGateway, twilio: FakeTwilio) -> None:
    gw.services.turn = answering("Sure.")
    call = Call(gw, twilio)
    twiml = await call.silence(await call.start())
    _, twiml = await call.follow(await call.say(twiml, "hello"))
    twiml = await call.silence(twiml)  # silence after an answer: re-prompt, not goodbye
    assert twiml.find("Hangup") is None and twiml.find("Gather") is not None


async def test_empty_speech_result_counts_as_silence(gw: StubGateway, twilio: FakeTwilio) -> None:
    call = Call(gw, twilio)
    twiml = await call.say(await call.start(), "   ")
    assert says(twiml) == ["Sorry, I didn't hear anything. What can I do for you?"]
    assert gw.services.turns == []


async def test_slow_agent_gets_filler_then_the_streamed_answer(gw: StubGateway, twilio: FakeTwilio) -> None:
    release_first, release_rest = asyncio.Event(), asyncio.Event()
    first = "Let me check that for you. "
    full = first + "Your order shipped yesterday and arrives on Friday."

    async def slow(event: InboundEvent, reply: Reply) -> Answer:
        await reply.start()
        await release_first.wait()
        await reply.update(first + "Your ord")
        await release_rest.wait()
        await reply.finish(Answer(full))
        return Answer(full)

    gw.services.turn = slow
    call = Call(gw, twilio)
    twiml = await call.say(await call.start(), "where is my order")
    # nothing ready within the budget: a filler, a pause, and a redirect to poll
    assert says(twiml) == ["One moment, please."]
    assert twiml.find("Pause") is not None and twiml.find("Gather") is None
    assert urlsplit(redirect(twiml)).path == "/webhooks/voice/continue"
    twiml = await call.post(redirect(twiml))
    assert says(twiml) == ["Still working on it."]
    release_first.set()
    twiml = await call.post(redirect(twiml))
    # the first sentence is spoken while the rest is still streaming
    assert says(twiml) == ["Let me check that for you."]
    assert twiml.find("Gather") is None and "/continue" in redirect(twiml)
    release_rest.set()
    said, twiml = await call.follow(await call.post(redirect(twiml)))
    assert said == ["Your order shipped yesterday and arrives on Friday."]
    assert twiml.find("Gather") is not None
    assert len(gw.services.turns) == 1


async def test_retried_gather_does_not_run_the_turn_twice(gw: StubGateway, twilio: FakeTwilio) -> None:
    release = asyncio.Event()

    async def slow(event: InboundEvent, reply: Reply) -> Answer:
        await release.wait()
        await reply.finish(Answer("Done."))
        return Answer("Done.")

    gw.services.turn = slow
    call = Call(gw, twilio)
    greeting = await call.start()
    await call.say(greeting, "hello")
    twiml = await call.say(greeting, "hello")  # Twilio retried the same action request
    release.set()
    said, _ = await call.follow(twiml)
    assert said[-1] == "Done."
    assert len(gw.services.turns) == 1


async def test_long_streamed_answer_is_spoken_in_order_with_nothing_lost(gw: StubGateway,
                                                                         twilio: FakeTwilio) -> None:
    sentences = [f"Point number {i} is worth knowing." for i in range(120)]
    full = " ".join(sentences)

    async def streaming(event: InboundEvent, reply: Reply) -> Answer:
        text = ""
        for sentence in sentences:
            text += sentence + " "
            await reply.update(text)
            await asyncio.sleep(0.002)
        await reply.finish(Answer(full))
        return Answer(full)

    gw.services.turn = streaming
    call = Call(gw, twilio)
    said, twiml = await call.follow(await call.say(await call.start(), "tell me everything"))
    fillers = {"One moment, please.", "Still working on it."}
    spoken = " ".join(s for s in said if s not in fillers)
    assert spoken.split() == full.split()
    assert all(len(s) <= 300 for s in said)
    assert twiml.find("Gather") is not None


async def test_failed_turn_apologises_instead_of_dropping_the_call(gw: StubGateway, twilio: FakeTwilio) -> None:
    async def broken(event: InboundEvent, reply: Reply) -> Answer:
        raise RuntimeError("agent exploded")

    gw.services.turn = broken
    call = Call(gw, twilio)
    said, twiml = await call.follow(await call.say(await call.start(), "hello"))
    assert said[-1] == "Sorry, I could not get an answer right now. Please try again."
    assert twiml.find("Gather") is not None


async def test_continue_without_state_asks_again(gw: StubGateway, twilio: FakeTwilio) -> None:
    # e.g. the gateway restarted between two of Twilio's requests
    twiml = await Call(gw, twilio).post(f"{gw.url}/webhooks/voice/continue?step=3")
    assert "Could you say that again?" in " ".join(says(twiml))
    gather = twiml.find("Gather")
    assert gather is not None and gather.attrib["action"].endswith("step=4")


async def test_call_end_status_forgets_the_call(gw: StubGateway, twilio: FakeTwilio) -> None:
    release = asyncio.Event()

    async def slow(event: InboundEvent, reply: Reply) -> Answer:
        await release.wait()
        return Answer("late")

    gw.services.turn = slow
    call = Call(gw, twilio)
    await call.say(await call.start(), "hello")
    channel = gw.channel
    assert CALL in channel.calls
    await call.post(f"{gw.url}/webhooks/voice", CallStatus="completed")
    assert CALL not in channel.calls


def test_voice_settings_keep_the_budget_inside_twilios_timeout() -> None:
    from gateway.errors import ConfigError

    base = {"type": "twilio-voice", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
    settings = TwilioVoiceChannel.validate("phone", base)
    assert settings.language == "en-US" and settings.answer_budget == 8.0  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"channels\.phone\.answer_budget"):
        TwilioVoiceChannel.validate("phone", {**base, "answer_budget": 14})
    with pytest.raises(ConfigError, match=r"channels\.phone\.from: unknown key"):
        TwilioVoiceChannel.validate("phone", {**base, "from": "+15550000000"})
