"""Human handoff end to end: the agent (or the user) asks for a person, a thread opens in the Slack
support channel, the agent is paused, staff replies reach the user on Telegram or SMS, and a
resolve word (or the timeout) gives the conversation back to the agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.commands import NEW_CONVERSATION_TEXT
from gateway.handoff import RESOLVED_TEXT, STARTED_TEXT, TIMEOUT_TEXT, UNAVAILABLE_TEXT
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes import slack as fs
from tests.fakes import slack_inbound
from tests.fakes.slack import FakeMessage, FakeSlack
from tests.fakes.telegram import SECRET, FakeTelegram, post_update, text_update
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, message_params

SUPPORT = "CSUPPORT1"
STAFF = "USTAFF01"
CHAT = 4242
PHONE, BOT = "+15551230001", "+15557654321"


@dataclass
class Desk:
    gw: GatewayUnderTest
    slack: FakeSlack
    tg: FakeTelegram
    twilio: FakeTwilio
    events: int = 0

    def chats(self) -> list[dict[str, Any]]:
        return [r.json for r in self.gw.emulator.requests if r.path.endswith("/chat")]

    async def telegram(self, text: str) -> None:
        update = text_update(text, chat_id=CHAT, user_id=CHAT)
        assert (await post_update(f"{self.gw.url}/webhooks/tg", update)).status == 200
        await self.gw.idle()

    def telegram_texts(self) -> list[str]:
        return [m.text for m in self.tg.chat(CHAT)]

    async def sms(self, text: str) -> None:
        self.events += 1
        async with aiohttp.ClientSession() as http:
            status, _, _ = await self.twilio.post(http, f"{self.gw.url}/webhooks/sms",
                                                  message_params(text, PHONE, BOT, f"SM{self.events}"))
        assert status == 200
        await self.gw.idle()

    def threads(self) -> list[FakeMessage]:
        """Handoff threads opened in the support channel."""
        return self.slack.thread(SUPPORT, None)

    def thread(self, top: FakeMessage) -> list[str]:
        return [m.text for m in self.slack.thread(SUPPORT, top.ts)]

    async def staff_says(self, top: FakeMessage, text: str, *, user: str = STAFF) -> None:
        self.events += 1
        ts = f"1800000000.{self.events:06d}"
        event = slack_inbound.message(text, channel=SUPPORT, channel_type="channel", user=user, ts=ts, thread_ts=top.ts)
        body = slack_inbound.event_body(event, event_id=f"EvStaff{self.events}")
        async with aiohttp.ClientSession() as http, http.post(
            f"{self.gw.url}/webhooks/desk", data=body, headers=slack_inbound.signed_headers(body)
        ) as resp:
            assert resp.status == 200
        await self.gw.idle()


@asynccontextmanager
async def desk(admin_token: str | None = None, **handoff: Any) -> AsyncIterator[Desk]:
    async with FakeSlack() as slack, FakeTelegram() as tg, FakeTwilio() as twilio:
        channels = {
            "desk": {"type": "slack", "bot_token": slack.token, "signing_secret": fs.SECRET,
                     "api_base": slack.api_base},
            "tg": {"type": "telegram", "bot_token": tg.token, "secret_token": SECRET, "api_base": tg.api_base,
                   "edit_interval": 0.05},
            "sms": {"type": "twilio-sms", "from": BOT, "api_base": twilio.url, "account_sid": ACCOUNT_SID,
                    "auth_token": AUTH_TOKEN},
        }
        sections = {"handoff": {"slack_channel": "desk", "support_channel_id": SUPPORT, **handoff}}
        gateway = {"admin_token": admin_token} if admin_token else {}
        async with running_gateway(channels, sections, gateway=gateway) as gw:
            yield Desk(gw, slack, tg, twilio)


async def test_the_full_loop_from_agent_action_to_resolve() -> None:
    async with desk(transcript_url="https://chatbase.example/{agent_id}/{conversation_id}") as d:
        await d.telegram("where is my parcel?")
        await d.telegram("call tool escalateToHuman")
        # The agent's action opened a thread with who, why and the transcript, and the user was told.
        [top] = d.threads()
        assert "4242 on tg" in top.text and "The agent asked for a person." in top.text
        conversation_id = d.chats()[1]["conversationId"]
        assert f"<https://chatbase.example/test-agent/{conversation_id}|transcript>" in top.text
        transcript = d.thread(top)[0]
        assert "*User:* where is my parcel?" in transcript and "*Agent:* You said:" in transcript
        assert d.telegram_texts()[-1].endswith(STARTED_TEXT)
        agent_calls = len(d.chats())

        # Paused: the user's messages go to the thread, not to the agent.
        await d.telegram("hello? <@U999> & co")
        assert len(d.chats()) == agent_calls
        assert d.thread(top)[-1] == "*4242 on tg:* hello? &lt;@U999&gt; &amp; co"  # no pings from user text

        # A staff reply in the thread reaches the user on Telegram, and is marked delivered.
        await d.staff_says(top, "Hi, this is Alex. Your parcel left this morning.")
        assert d.telegram_texts()[-1] == "Hi, this is Alex. Your parcel left this morning."
        assert d.slack.calls_to("reactions.add", ok_only=True)
        assert len(d.chats()) == agent_calls

        # Resolve hands back: both sides are told, and the agent answers the next message.
        await d.staff_says(top, "!resolve")
        assert d.telegram_texts()[-1] == RESOLVED_TEXT
        assert f"Resolved by <@{STAFF}>" in d.thread(top)[-1]
        await d.telegram("thanks!")
        assert d.chats()[-1] == {"message": "thanks!", "stream": True, "conversationId": conversation_id}
        assert d.telegram_texts()[-1].startswith('You said: "thanks!"')

        # A late message in the closed thread reaches nobody.
        sent = len(d.telegram_texts())
        await d.staff_says(top, "one more thing")
        assert len(d.telegram_texts()) == sent


async def test_the_user_asks_for_a_person_over_sms() -> None:
    async with desk() as d:
        await d.sms("hi")
        await d.sms("/HUMAN")
        assert d.twilio.bodies(PHONE)[-1] == STARTED_TEXT
        [top] = d.threads()
        assert "+15551230001 on sms" in top.text and "They asked for a person." in top.text
        await d.sms("/human")  # asking twice opens no second thread
        assert len(d.threads()) == 1
        await d.staff_says(top, "Hello from the team")
        assert d.twilio.bodies(PHONE)[-1] == "Hello from the team"
        await d.staff_says(top, "/resolve")
        assert d.twilio.bodies(PHONE)[-1] == RESOLVED_TEXT
        await d.sms("back to the bot")
        assert d.chats()[-1]["message"] == "back to the bot"


async def test_the_user_asks_for_a_person_on_telegram() -> None:
    async with desk() as d:
        await d.telegram("/human")
        assert d.telegram_texts() == [STARTED_TEXT]
        [top] = d.threads()
        assert "4242 on tg" in top.text and "They asked for a person." in top.text
        await d.staff_says(top, " /resolve")  # how Slack lets staff send a leading slash
        assert d.telegram_texts()[-1] == RESOLVED_TEXT
        assert d.chats() == []


async def test_the_agent_takes_back_after_the_timeout() -> None:
    async with desk(timeout=0.3) as d:
        await d.sms("/human")
        [top] = d.threads()
        await asyncio.sleep(0.4)
        await d.sms("anyone?")
        assert d.twilio.bodies(PHONE)[-2:] == [
            TIMEOUT_TEXT, 'You said: "anyone?". This is message 1 of this conversation.'
        ]
        assert "No reply from the team in time" in d.thread(top)[-1]


async def test_the_sweep_hands_back_without_waiting_for_the_user() -> None:
    async with desk(timeout=0.2) as d:
        await d.sms("/human")
        await asyncio.sleep(0.3)
        handoff = d.gw.controls.handoff
        assert handoff is not None and await handoff.sweep() == 1
        assert d.twilio.bodies(PHONE)[-1] == TIMEOUT_TEXT
        assert await handoff.sweep() == 0


async def test_new_during_a_handoff_hands_back() -> None:
    async with desk() as d:
        await d.sms("/human")
        [top] = d.threads()
        await d.sms("/new")
        assert d.twilio.bodies(PHONE)[-1] == NEW_CONVERSATION_TEXT
        assert "started a new conversation" in d.thread(top)[-1]
        await d.sms("fresh start")
        assert d.chats()[-1]["message"] == "fresh start"


async def test_when_slack_fails_the_agent_carries_on() -> None:
    async with desk() as d:
        d.slack.fail_next("chat.postMessage", status=200, error="channel_not_found", retry_after=None)
        await d.sms("/human")
        assert d.twilio.bodies(PHONE)[-1] == UNAVAILABLE_TEXT
        await d.sms("still there?")
        assert d.chats()[-1]["message"] == "still there?"  # not paused
        d.slack.fail_next("chat.postMessage", status=200, error="channel_not_found", retry_after=None)
        await d.sms("call tool escalateToHuman")
        outputs = [r.json for r in d.gw.emulator.requests if r.path.endswith("/tool-result")]
        assert outputs[-1]["output"]["error"]["code"] == "HANDOFF_FAILED"


async def test_thread_replies_elsewhere_in_the_support_channel_are_ignored() -> None:
    async with desk() as d:
        await d.sms("/human")
        stray = FakeMessage(SUPPORT, "1700000999.000001", "some other thread", None)
        await d.staff_says(stray, "chatter")
        assert d.twilio.bodies(PHONE)[-1] == STARTED_TEXT
        assert len(d.chats()) == 0


@pytest.mark.parametrize("configured", [{}, {"slack_channel": None}])
def test_handoff_is_off_unless_configured(configured: dict[str, Any]) -> None:
    from adapters.stores.memory import MemoryStore
    from gateway.commands import Controls
    from gateway.config import parse_settings

    controls = Controls(parse_settings({"handoff": configured}, env={}), MemoryStore())
    assert controls.handoff is None and controls.parse("/human") is None


def test_the_transcript_is_escaped_and_trimmed() -> None:
    from channels.slack.desk import transcript_text
    from gateway.handoff import transcript_lines

    long = "x" * 1000
    text = transcript_text(transcript_lines([
        {"role": "user", "parts": [{"type": "text", "text": "<@U1> hi & bye"}]},
        {"role": "assistant", "parts": [{"type": "tool-call", "toolName": "t"}, {"type": "text", "text": long}]},
        {"role": "assistant", "parts": []},
    ]))
    lines = text.splitlines()
    assert lines[1] == "*User:* &lt;@U1&gt; hi &amp; bye"
    assert lines[2].startswith("*Agent:* xxx") and len(lines[2]) < 700
    assert len(lines) == 3


async def test_web_chat_cannot_hand_off_and_says_where_to_go_instead() -> None:
    """A web chat answer lives only in its HTTP response: no thread is opened that could never reply."""
    from gateway.handoff import NOT_HERE_TEXT

    async with FakeSlack() as slack:
        channels = {
            "desk": {"type": "slack", "bot_token": slack.token, "signing_secret": fs.SECRET,
                     "api_base": slack.api_base},
            "web": {"type": "web"},
        }
        sections = {"handoff": {"slack_channel": "desk", "support_channel_id": SUPPORT}}
        async with running_gateway(channels, sections) as gw, aiohttp.ClientSession() as http:
            answers = []
            for message in ("/human", "call tool escalateToHuman"):
                async with http.post(f"{gw.url}/chat/web/messages",
                                     json={"sessionId": "web-session-1", "message": message}) as resp:
                    body = await resp.text()
                deltas = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
                answers.append("".join(d.get("delta", "") for d in deltas))
            results = [r.json for r in gw.emulator.requests if r.path.endswith("/tool-result")]
        assert answers[0] == NOT_HERE_TEXT
        assert results[0]["output"]["error"]["code"] == "HANDOFF_UNAVAILABLE"
        assert slack.thread(SUPPORT, None) == []  # nothing was posted to the support channel
