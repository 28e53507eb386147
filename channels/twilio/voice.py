"""Twilio Voice: speech in through ``<Gather>``, the agent's answer out through ``<Say>``.

Flow of one call (every URL below is signature-checked like the main webhook):

* ``POST /webhooks/<name>``: greeting inside ``<Gather input="speech">``;
* ``POST /webhooks/<name>/gather?step=N``: the caller's ``SpeechResult`` starts turn N; we answer
  with the first sentences ready within ``answer_budget`` seconds, or a short filler, then
  ``<Redirect>`` to ``/continue`` while the answer is still streaming, and finally a new
  ``<Gather>`` for turn N+1. No speech: one re-prompt, then a goodbye and ``<Hangup/>``.

Step numbers and silence counts travel in the (signed) URLs; only the streaming answer is kept
in memory, keyed by ``CallSid``.
"""

from __future__ import annotations

import asyncio
import time

import pydantic
from aiohttp import web
from twilio.twiml.voice_response import Gather, VoiceResponse

from channels.twilio.base import TWIML_CONTENT_TYPE, TwilioChannel, TwilioSettings, e164, form_params
from channels.twilio.voice_turns import PendingAnswer, VoiceReply
from gateway.channel import InboundRequest, Services, WebhookResult
from gateway.errors import WebhookRejected
from gateway.events import Identity, InboundEvent
from gateway.text import split_text

#: Markdown characters handed out per webhook answer; the rest follows through ``/continue``
CHUNK_CHARS = 900
#: characters per ``<Say>``: short verbs let Twilio start speaking sooner
SAY_CHARS = 300
#: after this long without a complete answer the caller is asked to try again
GIVE_UP_SECONDS = 120.0
#: a call's state is dropped when untouched this long (calls whose end we never heard about)
STATE_TTL = 600.0
_ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


class VoiceSettings(TwilioSettings):
    """``[channels.<name>]`` of ``twilio-voice``."""

    language: str = "en-US"
    #: a Twilio ``<Say>`` voice such as ``Polly.Joanna-Neural``; empty: Twilio's default
    voice: str = ""
    greeting: str = "Hello! How can I help you today?"
    reprompt: str = "Sorry, I didn't hear anything. What can I do for you?"
    goodbye: str = "I'll hang up now. Thank you for calling, goodbye!"
    fillers: tuple[str, ...] = ("One moment, please.", "Still working on it.")
    apology: str = "Sorry, I could not get an answer right now. Please try again."
    #: seconds one webhook waits for speakable text before a filler (Twilio allows 15 in all)
    answer_budget: float = pydantic.Field(8.0, gt=0, le=12)


class TwilioVoiceChannel(TwilioChannel[VoiceSettings]):
    """``type = "twilio-voice"``: one phone call is one conversation."""

    type = "twilio-voice"
    can_deliver_later = False  # a call answers only while the caller is on the line
    Settings = VoiceSettings

    def __init__(self, name: str, settings: VoiceSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        #: the answer being spoken on each call, by CallSid (process memory: see module doc)
        self.calls: dict[str, PendingAnswer] = {}

    def describe(self) -> str:
        return f"twilio-voice in {self.settings.language}, voice {self.settings.voice or 'default'}"

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        return [("A call comes in (Webhook, HTTP POST)", public_url.rstrip("/") + self.webhook_path)]

    def routes(self) -> list[web.RouteDef]:
        return [
            *super().routes(),
            self.signed_route(f"{self.webhook_path}/gather", self._gather_action),
            self.signed_route(f"{self.webhook_path}/continue", self._continue),
        ]

    async def shutdown(self) -> None:
        for pending in self.calls.values():
            if pending.task is not None:
                pending.task.cancel()
        self.calls.clear()

    # -- TwiML helpers ---------------------------------------------------------------------------
    def _url(self, sub: str, **query: int) -> str:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return self.public(f"{self.webhook_path}/{sub}" + (f"?{qs}" if qs else ""))

    def _say(self, response: VoiceResponse | Gather, text: str) -> None:
        extra = {"voice": self.settings.voice} if self.settings.voice else {}
        for part in split_text(text, SAY_CHARS):
            response.say(part, language=self.settings.language, **extra)

    def _listen(self, response: VoiceResponse, step: int, prompt: str = "", silence: int = 0) -> str:
        """``<Gather>`` for turn ``step``; silence falls through to the next verb, a redirect."""
        gather = Gather(input="speech", action=self._url("gather", step=step), method="POST",
                        speech_timeout="auto", language=self.settings.language)
        if prompt:
            self._say(gather, prompt)
        response.append(gather)
        response.redirect(self._url("gather", step=step, silence=silence + 1), method="POST")
        return str(response)

    # -- webhooks --------------------------------------------------------------------------------
    async def parse(self, request: InboundRequest) -> WebhookResult:
        form = form_params(request)
        call_sid = form.get("CallSid")
        if not call_sid:
            raise WebhookRejected(400, "not a Twilio voice webhook (CallSid missing)")
        self._prune()
        if form.get("CallStatus") in _ENDED:
            # A status callback pointed at the main URL: the call is over, forget its state.
            self._forget(call_sid)
            return WebhookResult(body=str(VoiceResponse()), content_type=TWIML_CONTENT_TYPE)
        self.log.info("call %s from %s", call_sid, form.get("From", "?"))
        twiml = self._listen(VoiceResponse(), step=1, prompt=self.settings.greeting)
        return WebhookResult(body=twiml, content_type=TWIML_CONTENT_TYPE)

    async def _gather_action(self, request: InboundRequest) -> str:
        started = time.monotonic()
        form = form_params(request)
        call_sid = form.get("CallSid", "")
        if not call_sid:
            raise WebhookRejected(400, "CallSid missing")
        step = _int(request.query.get("step"), 1)
        speech = form.get("SpeechResult", "").strip()
        if not speech:
            return self._silence(call_sid, step, _int(request.query.get("silence"), 1))
        pending = self.calls.get(call_sid)
        if pending is not None and step < pending.step:
            return await self._speak(pending)  # a late retry of an older step: stay on the current one
        if pending is None or pending.step != step:
            # A new turn; a Twilio retry of the same step finds its pending answer instead.
            pending = self._start_turn(call_sid, step, speech, form.get("From", ""))
        twiml = await self._speak(pending)
        self.log.debug("call %s step %d answered in %.2fs", call_sid, step, time.monotonic() - started)
        return twiml

    async def _continue(self, request: InboundRequest) -> str:
        form = form_params(request)
        call_sid = form.get("CallSid", "")
        step = _int(request.query.get("step"), 0)
        pending = self.calls.get(call_sid)
        if pending is None or pending.step != step:
            # Restarted, or another instance served the call: the answer is gone, ask again.
            self.log.warning("call %s: no pending answer for step %d (restart or no sticky routing?)",
                             call_sid, step)
            return self._listen(VoiceResponse(), step + 1, "Sorry, I lost my train of thought. "
                                "Could you say that again?")
        return await self._speak(pending)

    def _silence(self, call_sid: str, step: int, silence: int) -> str:
        response = VoiceResponse()
        if silence >= 2:
            self._say(response, self.settings.goodbye)
            response.hangup()
            self._forget(call_sid)
            return str(response)
        return self._listen(response, step, self.settings.reprompt, silence=silence)

    # -- the turn --------------------------------------------------------------------------------
    def _start_turn(self, call_sid: str, step: int, speech: str, caller: str) -> PendingAnswer:
        old = self.calls.get(call_sid)
        if old is not None and old.task is not None and not old.task.done():
            old.task.cancel()  # the caller moved on (barge-in after a give-up)
        pending = PendingAnswer(call_sid, step)
        number = e164(caller) or "unknown"
        event = InboundEvent(
            channel=self.name,
            key=f"{call_sid}:{step}",
            identity=Identity(self.type, "", number),
            scope=call_sid,
            text=speech,
            reply={"call_sid": call_sid},
        )
        pending.task = asyncio.create_task(self._run_turn(event, pending), name=f"voice-turn-{event.key}")
        self.calls[call_sid] = pending
        return pending

    async def _run_turn(self, event: InboundEvent, pending: PendingAnswer) -> None:
        try:
            await self.services.run_turn(event, VoiceReply(self, event, pending))
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("voice turn %s failed", event.key)
        finally:
            if not pending.done:
                # An answer that never finished: say what arrived, or apologise, never hang silent.
                pending.set_text(pending.text or self.settings.apology, done=True)

    async def _speak(self, pending: PendingAnswer) -> str:
        from gateway.markdown import to_speech

        await pending.wait_ready(self.settings.answer_budget)
        response = VoiceResponse()
        chunk = pending.take(CHUNK_CHARS)
        if chunk:
            if pending.said == len(chunk):
                # How long the caller waited for the first words of the answer.
                self.log.info("call %s step %d: speaking after %.1fs", pending.call_sid, pending.step,
                              time.monotonic() - pending.started)
            self._say(response, to_speech(chunk))
        if pending.finished:
            return self._listen(response, pending.step + 1)
        if time.monotonic() - pending.started > GIVE_UP_SECONDS:
            self.log.warning("call %s: no complete answer after %.0fs, giving up", pending.call_sid,
                             GIVE_UP_SECONDS)
            self._forget(pending.call_sid)
            return self._listen(response, pending.step + 1, self.settings.apology)
        if not chunk:
            # Nothing speakable yet: keep the line alive and poll again.
            fillers = self.settings.fillers
            if fillers:
                self._say(response, fillers[min(pending.polls, len(fillers) - 1)])
            response.pause(length=1)
            pending.polls += 1
        response.redirect(self._url("continue", step=pending.step), method="POST")
        return str(response)

    # -- state housekeeping ----------------------------------------------------------------------
    def _forget(self, call_sid: str) -> None:
        pending = self.calls.pop(call_sid, None)
        if pending is not None and pending.task is not None and not pending.task.done():
            pending.task.cancel()

    def _prune(self) -> None:
        now = time.monotonic()
        for call_sid in [c for c, p in self.calls.items() if now - p.touched > STATE_TTL]:
            self._forget(call_sid)

    async def send_text(self, event: InboundEvent, text: str) -> None:
        # Only reached if the core resumes a voice turn after a restart: the caller is gone.
        self.log.warning("answer for call %s dropped: the call's webhooks have ended", event.scope)


def _int(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() else default
