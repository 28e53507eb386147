"""Chaos runs: gateways as real processes answering Slack and SMS while they are killed or the store hangs.

The platforms are the fake Slack and Twilio APIs with a latency (a call takes effect at once and
answers ``latency`` seconds later, as a real API may still be answering when the caller dies), the
agent is the Chatbase emulator. Events are posted like platforms do: a refused or failed webhook
(connection refused while an instance restarts, a 503 while the store hangs) is retried, on
another instance, until it is acknowledged.

At the end every message the fake platforms hold is read: each event must have its answer exactly
once, and nothing else may be there (no "thinking…" placeholder, no half-grown answer, no copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from adapters.emulator import Emulator
from gateway.cli import free_port
from switchboard.testing import whatsapp as wa
from tests.fakes.meta import APP_SECRET, VERIFY_TOKEN, FakeGraph, payload, signature, text_item
from tests.fakes.slack import SECRET, FakeSlack
from tests.fakes.slack_inbound import event_body, mention, message, signed_headers
from tests.fakes.telegram import SECRET as TG_SECRET
from tests.fakes.telegram import FakeTelegram, text_update
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, message_params
from tests.processes import GatewayProcess, write_config

BOT_NUMBER = "+15557654321"
THINKING = "_thinking…_"
#: what a log may never show after a chaos run
FORBIDDEN_IN_LOGS = ("Traceback", "Task was destroyed but it is pending", "was never awaited")
_SAID = re.compile(r'You said: "(.*?)"\.')


@dataclass
class Inbound:
    """One event as a platform sends it: where it belongs and how to post it."""

    n: int
    channel: str  # "slack", "sms", "messenger", "telegram" or "whatsapp"
    conversation: str  # Slack channel id, phone number, page-scoped id or Telegram chat id
    text: str
    thread: str | None = None

    def body(self) -> tuple[bytes, dict[str, str]] | dict[str, str]:
        if self.channel == "sms":
            return message_params(self.text, self.conversation, BOT_NUMBER, f"SM{self.n:032d}")
        if self.channel == "telegram":
            chat = int(self.conversation)
            update = text_update(self.text, chat_id=chat, user_id=chat, update_id=self.n + 1, message_id=self.n + 1)
            raw = json.dumps(update).encode()
            return raw, {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
        if self.channel == "whatsapp":
            raw = wa.payload([wa.text(self.text, wa_id=self.conversation, wamid=f"wamid.chaos{self.n:08d}")])
            return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": wa.signature(raw)}
        if self.channel == "messenger":
            raw = payload([text_item(self.text, sender=self.conversation, mid=f"m_in_{self.n:08d}")])
            return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": signature(raw)}
        ts = f"{1_690_000_000 + self.n}.000100"
        if self.conversation.startswith("D"):
            event = message(self.text, channel=self.conversation, user=f"U{self.conversation[1:]}", ts=ts)
        else:
            event = mention(self.text, channel=self.conversation, user="U0000001", ts=ts)
            self.thread = ts
        raw = event_body(event, event_id=f"Ev{self.n:08d}")
        return raw, signed_headers(raw)


@dataclass
class Tally:
    """What a person would see, per event: answered once, twice, never; and what else was left."""

    events: int = 0
    lost: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    apologies: int = 0
    retried_posts: int = 0
    #: the most copies of one answer that reached the person
    most: int = 0
    stray_texts: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        return (f"{name}: {self.events} events, {len(self.twice)} answered twice, {len(self.strays)} stray "
                f"messages, {len(self.lost)} lost ({self.apologies} apologies, {self.retried_posts} webhook "
                f"posts retried)")

    def ok(self) -> bool:
        return not (self.lost or self.twice or self.strays)


@dataclass
class Chaos:
    """Fakes, the emulator and gateway processes for one run; use ``async with``."""

    tmp: Path
    store: str
    instances: int = 3
    latency: float = 0.2
    gateway: dict[str, Any] = field(default_factory=dict)
    procs: list[GatewayProcess] = field(default_factory=list)
    inbound: list[Inbound] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    retried_posts: int = 0

    async def __aenter__(self) -> Chaos:
        self._stack = contextlib.AsyncExitStack()
        self.slack = await self._stack.enter_async_context(FakeSlack())
        self.twilio = await self._stack.enter_async_context(FakeTwilio())
        self.graph = await self._stack.enter_async_context(FakeGraph())
        self.telegram = await self._stack.enter_async_context(FakeTelegram())
        self.whatsapp = await self._stack.enter_async_context(wa.FakeWhatsApp())
        self.slack.latency = self.twilio.latency = self.graph.latency = self.telegram.latency = self.latency
        self.whatsapp.latency = self.latency
        # Chaos is not about the agent's rate limit: the emulator announces one far above the
        # traffic, so the gateways' rate budget (which follows its headers) never paces them.
        self.emulator = Emulator(token_delay=0.01, rate_limit_max=100_000)
        self.agent_url = await self._stack.enter_async_context(self.emulator.serve("127.0.0.1", 0))
        self.http = await self._stack.enter_async_context(aiohttp.ClientSession())
        for i in range(self.instances):
            port = free_port()
            self.procs.append(GatewayProcess(self._config(f"g{i}", port), port))
        await asyncio.gather(*(p.start() for p in self.procs))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            await proc.kill()
        await self._stack.aclose()

    def _config(self, name: str, port: int) -> Path:
        url = f"http://127.0.0.1:{port}"
        return write_config(self.tmp / f"{name}.toml", {
            "gateway": {"host": "127.0.0.1", "port": port, "public_url": url, "store": self.store,
                        "lease_ttl": 2, "sweep_interval": 0.5, "shutdown_grace": 2, "user_rate_limit": 0,
                        **self.gateway},
            "agent": {"api_base": self.agent_url, "api_key": "chaos-test-key", "agent_id": "a", "timeout": 10},
            "channels.slack": {"type": "slack", "bot_token": self.slack.token, "signing_secret": SECRET,
                               "api_base": self.slack.api_base, "update_interval": 0.3},
            "channels.sms": {"type": "twilio-sms", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                             "from": BOT_NUMBER, "api_base": self.twilio.url, "status_callback": False},
            "channels.messenger": {"type": "messenger", "page_access_token": self.graph.token,
                                   "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN,
                                   "api_base": self.graph.api_base, "feedback_buttons": False},
            "channels.telegram": {"type": "telegram", "bot_token": self.telegram.token, "secret_token": TG_SECRET,
                                  "api_base": self.telegram.api_base, "edit_interval": 0.3,
                                  "feedback_buttons": False},
            "channels.whatsapp": {"type": "whatsapp", "phone_number_id": wa.PHONE_NUMBER_ID,
                                  "access_token": self.whatsapp.token, "app_secret": wa.APP_SECRET,
                                  "verify_token": wa.VERIFY_TOKEN, "api_base": self.whatsapp.api_base,
                                  "feedback_buttons": False},
        })

    # -- traffic -----------------------------------------------------------------------------------
    def plan(self, events: int, conversations: int = 40, *, only: str | None = None) -> None:
        """``events`` events, half Slack (DMs and channel mentions), half SMS, over ``conversations``;
        ``only="messenger"``, ``"telegram"`` or ``"whatsapp"`` makes them all messages of that channel instead."""
        per_kind = max(1, conversations // 2)
        for n in range(events):
            if only == "telegram":
                self.inbound.append(Inbound(n, "telegram", str(1000 + n % conversations), f"telegram question {n}"))
            elif only == "whatsapp":
                self.inbound.append(Inbound(n, "whatsapp", f"1555{n % conversations:07d}", f"whatsapp question {n}"))
            elif only == "messenger":
                psid = f"61000000{n % conversations:08d}"
                self.inbound.append(Inbound(n, "messenger", psid, f"messenger question {n}"))
            elif n % 2 == 0:
                k = (n // 2) % per_kind
                where = f"D{k:07d}" if k % 2 == 0 else f"C{k:07d}"
                self.inbound.append(Inbound(n, "slack", where, f"slack question {n}"))
            else:
                k = (n // 2) % per_kind
                self.inbound.append(Inbound(n, "sms", f"+1555{k:07d}", f"sms question {n}"))

    async def send(self, rate: float) -> None:
        """Post every planned event (about ``rate`` a second), each retried until acknowledged."""
        turn = itertools.count()
        tasks = []
        for event in self.inbound:
            tasks.append(asyncio.create_task(self._deliver(event, turn)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)

    async def _deliver(self, event: Inbound, turn: itertools.count[int]) -> None:
        body = event.body()
        while True:
            proc = self.procs[next(turn) % len(self.procs)]
            try:
                if isinstance(body, dict):
                    status, _, _ = await self.twilio.post(self.http, f"{proc.url}/webhooks/sms", body)
                else:
                    raw, headers = body
                    async with self.http.post(f"{proc.url}/webhooks/{event.channel}", data=raw, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=10)) as r:
                        status = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            if status == 200:
                self.acked.add(event.n)
                return
            self.retried_posts += 1
            await asyncio.sleep(0.3)

    # -- faults ------------------------------------------------------------------------------------
    async def kill_every(self, seconds: float, until: asyncio.Event) -> int:
        """kill -9 one instance after another (restarting each at once) until ``until`` is set."""
        kills = 0
        rng = random.Random(7)
        while not until.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), seconds * rng.uniform(0.6, 1.4))
            if until.is_set():
                break
            proc = self.procs[kills % len(self.procs)]
            await proc.kill()
            kills += 1
            await proc.start()
        return kills

    # -- the verdict ------------------------------------------------------------------------------
    def answered(self) -> int:
        """Events whose answer is on the platform (for waiting; :meth:`tally` is the verdict)."""
        said = {m.group(1) for text in self._texts() for m in [_SAID.search(text)] if m}
        return sum(1 for e in self.inbound if e.text in said)

    def _texts(self) -> list[str]:
        return [m.text for m in self.slack.all_messages()] + [r["body"] for r in self.twilio.resources] + \
            [b["message"]["text"] for b in self.graph.sent() if "message" in b] + \
            [m.text for m in self.telegram.messages.values() if not m.deleted] + \
            [t for b in self.whatsapp.sent() for t in [_wa_body(b)]]

    async def wait_answered(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.answered() < len(self.inbound) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2 * 2 + 1)  # two lease lifetimes: anything still resuming shows up

    def shown(self, kind: str | None = None) -> list[tuple[str, str]]:
        """Every message the fake platforms hold (of one channel, or all): (where, visible text)."""
        shown: list[tuple[str, str]] = []
        if kind in (None, "slack"):
            shown += [(f"slack {m.channel}/{m.thread_ts or '-'} {m.ts}", m.text) for m in self.slack.all_messages()]
        if kind in (None, "sms"):
            shown += [(f"sms {r['to']} {r['sid']}", r["body"]) for r in self.twilio.resources]
        if kind in (None, "telegram"):
            shown += [(f"telegram {m.chat_id}/{m.message_id}", m.text)
                      for m in self.telegram.messages.values() if not m.deleted]
        if kind in (None, "messenger"):
            shown += [(f"messenger {b['recipient']['id']}", b["message"]["text"])
                      for b in self.graph.sent() if "message" in b]
        if kind in (None, "whatsapp"):
            shown += [(f"whatsapp {b['to']}", _wa_body(b)) for b in self.whatsapp.sent()]
        return shown

    def tally(self, kind: str | None = None) -> Tally:
        """The verdict for one platform (``slack``, ``sms``) or, by default, both."""
        events = [e for e in self.inbound if kind in (None, e.channel)]
        tally = Tally(events=len(events), retried_posts=self.retried_posts)
        expected = {e.text: e for e in events}
        seen: Counter[str] = Counter()
        shown = self.shown(kind)
        for where, text in shown:
            found = _SAID.search(text)
            if found and found.group(1) in expected and text.rstrip().endswith("of this conversation."):
                seen[found.group(1)] += 1
            elif "can't answer right now" in text:
                tally.apologies += 1
                tally.strays.append(f"{where}: {text[:80]!r} (an apology: which event is unknown)")
            else:
                tally.strays.append(f"{where}: {text[:80]!r}")
                tally.stray_texts.append(text)
        tally.most = max(seen.values(), default=0)
        tally.lost = [t for t in expected if seen[t] == 0]
        tally.twice = [t for t in expected if seen[t] > 1]
        return tally

    def reconciled(self) -> int:
        """Sends a crash or outage interrupted that a resumed turn found on the platform and adopted."""
        marks = ("had arrived before the restart", "had been posted before the restart")
        return sum(1 for p in self.procs for line in p.read_log().splitlines() if any(m in line for m in marks))

    def log_problems(self) -> list[str]:
        """Lines of the gateways' logs that show a crash or a leaked task."""
        bad = []
        for proc in self.procs:
            for line in proc.read_log().splitlines():
                if any(word in line for word in FORBIDDEN_IN_LOGS):
                    bad.append(f"{proc.port}: {line[:200]}")
        return bad


def _wa_body(sent: dict[str, Any]) -> str:
    """What the person reads of one message the fake WhatsApp took (a text, or a button message's body)."""
    return str(sent["text"]["body"] if sent.get("type") == "text" else sent["interactive"]["body"]["text"])
