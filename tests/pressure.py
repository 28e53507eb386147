"""One conversation refused by the platform while hundreds of others flow (issue 17).

:func:`run_isolation` starts a gateway with one channel (Slack, Telegram or Twilio SMS) against
its fake platform, sends messages from ``conversations`` people at a steady rate, and after a
warm-up has the fake answer every call concerning one of them with 429 and ``Retry-After`` for
``refuse_for`` seconds. It records when each message's answer became visible and returns the
latencies of the other conversations before and during the refusal, and what the refused
conversation got. Shared by ``tests/test_pressure_isolation.py`` and ``bench`` (scenario 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gateway.policy import APOLOGY
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes import slack as fslack
from tests.fakes import slack_inbound
from tests.fakes import telegram as ftg
from tests.fakes import twilio as ftw

PLATFORMS = ("slack", "telegram", "twilio")
#: every answer of the emulator ends with this (``You said: "<text>". This is message N of this conversation.``)
_END = "of this conversation."
_BOT_NUMBER = "+15557654321"


@dataclass
class Sent:
    conversation: int
    token: str
    at: float
    phase: str
    answered: float | None = None


@dataclass
class Outcome:
    """Latencies (seconds) of the other conversations' answers, and what the refused one got."""

    platform: str
    before: list[float] = field(default_factory=list)
    during: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)
    #: the refused conversation's messages: how often each answer shows (1 = exactly once)
    refused_answers: dict[str, int] = field(default_factory=dict)
    refused_calls: int = 0
    unanswered: int = 0
    apologies: int = 0
    duplicates: int = 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Platform:
    """How to talk to one fake platform: send a message, read the texts a conversation shows."""

    fake: Any
    channel: dict[str, Any]

    def texts(self, conversation: int) -> list[str]:
        raise NotImplementedError

    def refuse(self, conversation: int, seconds: float, retry_after: float) -> None:
        raise NotImplementedError

    def refused_calls(self, conversation: int) -> int:
        raise NotImplementedError

    async def send(self, gw: GatewayUnderTest, http: aiohttp.ClientSession, conversation: int, text: str,
                   serial: int) -> None:
        raise NotImplementedError


class _Slack(_Platform):
    def __init__(self, fake: fslack.FakeSlack) -> None:
        self.fake = fake
        self.channel = {"type": "slack", "bot_token": fake.token, "signing_secret": fslack.SECRET,
                        "api_base": fake.api_base, "update_interval": 0.5}

    @staticmethod
    def _dm(conversation: int) -> str:
        return f"D{conversation:05d}"

    def texts(self, conversation: int) -> list[str]:
        return [m.text for m in self.fake.thread(self._dm(conversation))]

    def refuse(self, conversation: int, seconds: float, retry_after: float) -> None:
        self.fake.refusals.refuse(self._dm(conversation), seconds, retry_after)

    def refused_calls(self, conversation: int) -> int:
        return self.fake.refusals.count.get(self._dm(conversation), 0)

    async def send(self, gw: GatewayUnderTest, http: aiohttp.ClientSession, conversation: int, text: str,
                   serial: int) -> None:
        ts = f"{1_690_000_000 + serial}.{serial % 1_000_000:06d}"
        event = slack_inbound.message(text, channel=self._dm(conversation), user=f"U{conversation:05d}", ts=ts)
        body = slack_inbound.event_body(event, event_id=f"Ev{serial:08d}")
        async with http.post(f"{gw.url}/webhooks/slack", data=body, headers=slack_inbound.signed_headers(body)) as r:
            assert r.status == 200, await r.text()


class _Telegram(_Platform):
    def __init__(self, fake: ftg.FakeTelegram) -> None:
        self.fake = fake
        self.channel = {"type": "telegram", "bot_token": fake.token, "secret_token": ftg.SECRET,
                        "api_base": fake.api_base, "edit_interval": 0.5}

    @staticmethod
    def _chat(conversation: int) -> int:
        return 10_000 + conversation

    def texts(self, conversation: int) -> list[str]:
        return [m.text for m in self.fake.chat(self._chat(conversation)) if not m.deleted]

    def refuse(self, conversation: int, seconds: float, retry_after: float) -> None:
        self.fake.refusals.refuse(str(self._chat(conversation)), seconds, retry_after)

    def refused_calls(self, conversation: int) -> int:
        return self.fake.refusals.count.get(str(self._chat(conversation)), 0)

    async def send(self, gw: GatewayUnderTest, http: aiohttp.ClientSession, conversation: int, text: str,
                   serial: int) -> None:
        chat = self._chat(conversation)
        update = ftg.text_update(text, chat_id=chat, user_id=chat, update_id=serial, message_id=serial)
        async with http.post(f"{gw.url}/webhooks/tg", json=update,
                             headers={"X-Telegram-Bot-Api-Secret-Token": ftg.SECRET}) as r:
            assert r.status == 200, await r.text()


class _Twilio(_Platform):
    def __init__(self, fake: ftw.FakeTwilio) -> None:
        self.fake = fake
        self.channel = {"type": "twilio-sms", "from": _BOT_NUMBER, "api_base": fake.url,
                        "account_sid": ftw.ACCOUNT_SID, "auth_token": ftw.AUTH_TOKEN}
        self._seen = 0
        self._by_number: dict[str, list[str]] = {}

    @staticmethod
    def _number(conversation: int) -> str:
        return f"+1555{conversation:07d}"

    def texts(self, conversation: int) -> list[str]:
        for message in self.fake.messages[self._seen:]:
            self._by_number.setdefault(message["To"], []).append(message["Body"])
        self._seen = len(self.fake.messages)
        return self._by_number.get(self._number(conversation), [])

    def refuse(self, conversation: int, seconds: float, retry_after: float) -> None:
        self.fake.refusals.refuse(self._number(conversation), seconds, retry_after)

    def refused_calls(self, conversation: int) -> int:
        return self.fake.refusals.count.get(self._number(conversation), 0)

    async def send(self, gw: GatewayUnderTest, http: aiohttp.ClientSession, conversation: int, text: str,
                   serial: int) -> None:
        params = ftw.message_params(text, self._number(conversation), _BOT_NUMBER, f"SM{serial:032x}")
        status, body, _ = await self.fake.post(http, f"{gw.url}/webhooks/twilio-sms", params)
        assert status == 200, body


@contextlib.asynccontextmanager
async def _platform(name: str) -> AsyncIterator[_Platform]:
    if name == "slack":
        async with fslack.FakeSlack() as slack:
            yield _Slack(slack)
    elif name == "telegram":
        async with ftg.FakeTelegram() as tg:
            yield _Telegram(tg)
    elif name == "twilio":
        async with ftw.FakeTwilio() as tw:
            yield _Twilio(tw)
    else:
        raise ValueError(f"unknown platform {name!r}")


def _is_answer(text: str, token: str) -> bool:
    return token in text and text.rstrip().endswith(_END)


async def run_isolation(platform: str, *, conversations: int = 300, rate: float = 10.0, warmup: float = 10.0,
                        refuse_for: float = 30.0, retry_after: float = 5.0, cooldown: float = 5.0,
                        settle: float = 120.0, store: str = "memory://",
                        progress: Callable[[str], None] | None = None) -> Outcome:
    """See the module docstring. Conversation 0 is the refused one; it sends a message every few
    seconds during the refusal, like a person waiting for an answer would."""
    outcome = Outcome(platform)
    sent: list[Sent] = []
    async with _platform(platform) as plat:
        channel_name = "twilio-sms" if platform == "twilio" else {"slack": "slack", "telegram": "tg"}[platform]
        async with running_gateway({channel_name: plat.channel}, store=store,
                                   gateway={"max_concurrency": 64, "user_rate_limit": 0}) as gw, \
                aiohttp.ClientSession() as http:
            stop = asyncio.Event()
            watcher = asyncio.create_task(_watch(plat, sent, stop))
            serial = 1
            start = time.monotonic()
            phases = (("before", warmup), ("during", refuse_for), ("after", cooldown))
            tasks: list[asyncio.Task[None]] = []
            next_refused = 0.0
            for phase, length in phases:
                if phase == "during":
                    plat.refuse(0, refuse_for, retry_after)
                    next_refused = time.monotonic()
                phase_end = time.monotonic() + length
                while time.monotonic() < phase_end:
                    now = time.monotonic()
                    if phase == "during" and now >= next_refused:
                        who = 0
                        next_refused = now + max(1.0, refuse_for / 4)
                    else:
                        who = 1 + serial % (conversations - 1)
                    token = f"m{serial}x"
                    sent.append(Sent(who, token, now, phase))
                    tasks.append(asyncio.create_task(plat.send(gw, http, who, f"hello {token}", serial)))
                    serial += 1
                    await asyncio.sleep(max(0.0, start + serial / rate - time.monotonic()))
                if progress:
                    progress(f"{platform}: {phase} done, {serial - 1} messages sent")
            await asyncio.gather(*tasks)
            deadline = time.monotonic() + settle
            while any(s.answered is None for s in sent) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await gw.idle(timeout=max(1.0, deadline - time.monotonic()) + 30)
            stop.set()
            await watcher
            outcome.refused_calls = plat.refused_calls(0)
            for s in sent:
                if s.answered is None:
                    outcome.unanswered += 1
                    continue
                if s.conversation != 0:
                    getattr(outcome, s.phase).append(s.answered - s.at)
            for who in {s.conversation for s in sent}:
                texts = plat.texts(who)
                outcome.apologies += sum(APOLOGY in t for t in texts)
                for s in (s for s in sent if s.conversation == who):
                    shown = sum(_is_answer(t, s.token) for t in texts)
                    outcome.duplicates += max(0, shown - 1)
                    if who == 0:
                        outcome.refused_answers[s.token] = shown
    return outcome


async def _watch(plat: _Platform, sent: list[Sent], stop: asyncio.Event) -> None:
    """Note when each message's answer first shows in full, polling every 0.1 s."""
    while True:
        now = time.monotonic()
        waiting: dict[int, list[Sent]] = {}
        for s in sent:
            if s.answered is None:
                waiting.setdefault(s.conversation, []).append(s)
        for who, pending in waiting.items():
            texts = plat.texts(who)
            for s in pending:
                if any(_is_answer(t, s.token) for t in texts):
                    s.answered = now
        if stop.is_set():
            return
        await asyncio.sleep(0.1)
