"""The real-world webhook corpus, replayed through a running gateway (see tests/realworld/SOURCES.md).

Each sample in ``webhooks/<channel>/`` is a payload from a public source plus what the agent must
receive (``{media}`` stands for a signed gateway media link) or why it must be ignored. It is
posted signed the way the platform signs it, to a gateway whose platform APIs are the in-process
fakes and whose agent is the emulator; the test then checks what reached the agent and that the
person got an answer (or that nothing happened at all).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes import meta as fake_meta
from tests.fakes import slack as fake_slack
from tests.fakes.meta import APP_SECRET, VERIFY_TOKEN, FakeGraph
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_inbound import signed_headers
from tests.fakes.telegram import SECRET, FakeTelegram, post_update
from tests.fakes.twilio import AUTH_TOKEN, FakeTwilio

CORPUS = Path(__file__).parent / "webhooks"
SAMPLES = sorted(CORPUS.glob("*/*.json"))
SAMPLE_DATA = {path: json.loads(path.read_text(encoding="utf-8")) for path in SAMPLES}
#: the bot user the Slack samples from bolt-python were captured for
SLACK_BOT_USER = "W111"
#: the account of Twilio's documentation examples
TWILIO_ACCOUNT = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


@dataclass
class Platforms:
    tg: FakeTelegram
    slack: FakeSlack
    fb: FakeGraph
    ig: FakeGraph
    twilio: FakeTwilio

    def secrets(self) -> list[str]:
        return [self.tg.token, self.tg.token.split(":")[1], self.slack.token, self.fb.token, self.ig.token,
                AUTH_TOKEN, APP_SECRET, fake_slack.SECRET, SECRET]

    def replies(self, channel: str) -> list[dict[str, Any]]:
        """What the person was sent on ``channel`` (texts only, not typing indicators)."""
        if channel == "telegram":
            return self.tg.calls_to("sendMessage")
        if channel == "slack":
            return [{"text": m.text} for m in self.slack.all_messages()]
        if channel in ("messenger", "instagram"):
            graph = self.fb if channel == "messenger" else self.ig
            return [b for b in graph.sent() if "message" in b]
        return list(self.twilio.messages)


@asynccontextmanager
async def gateway() -> AsyncIterator[tuple[GatewayUnderTest, Platforms]]:
    async with AsyncExitStack() as stack:
        fakes = Platforms(
            tg=await stack.enter_async_context(FakeTelegram()),
            slack=await stack.enter_async_context(FakeSlack(bot_user=SLACK_BOT_USER)),
            fb=await stack.enter_async_context(FakeGraph()),
            ig=await stack.enter_async_context(FakeGraph(max_text=1000)),
            twilio=await stack.enter_async_context(FakeTwilio(account_sid=TWILIO_ACCOUNT)),
        )
        meta = {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN}
        twilio = {"account_sid": TWILIO_ACCOUNT, "auth_token": AUTH_TOKEN, "api_base": fakes.twilio.url}
        channels = {
            "telegram": {"type": "telegram", "bot_token": fakes.tg.token, "secret_token": SECRET,
                         "api_base": fakes.tg.api_base},
            "slack": {"type": "slack", "bot_token": fakes.slack.token, "signing_secret": fake_slack.SECRET,
                      "api_base": fakes.slack.api_base},
            "messenger": {"type": "messenger", "page_access_token": fakes.fb.token, "api_base": fakes.fb.api_base,
                          **meta},
            "instagram": {"type": "instagram", "page_access_token": fakes.ig.token, "api_base": fakes.ig.api_base,
                          **meta},
            "sms": {"type": "twilio-sms", "from": "+15558675310", **twilio},
            "whatsapp": {"type": "twilio-whatsapp", "from": "+14155238886", **twilio},
        }
        gw = await stack.enter_async_context(running_gateway(channels))
        yield gw, fakes


async def deliver(gw: GatewayUnderTest, fakes: Platforms, channel: str, payload: Any) -> tuple[int, str]:
    """POST ``payload`` to the channel's webhook, signed as the platform signs it."""
    url = f"{gw.url}/webhooks/{channel}"
    if channel == "telegram":
        resp = await post_update(url, payload)
        return resp.status, ""
    if channel in ("sms", "whatsapp"):
        async with aiohttp.ClientSession() as http:
            status, text, _ = await fakes.twilio.post(http, url, payload)
            return status, text
    body = json.dumps(payload).encode()
    if channel in ("messenger", "instagram"):
        return await fake_meta.post_signed(url, body)
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=signed_headers(body)) as resp:
        return resp.status, await resp.text()


def agent_messages(gw: GatewayUnderTest) -> list[str]:
    return [r.json["message"] for r in gw.emulator.requests if r.path.endswith("/chat") and r.json.get("message")]


def pattern(expected: str, gw: GatewayUnderTest, channel: str) -> re.Pattern[str]:
    """The expected text as a pattern: each ``{media}`` is a signed link of this gateway and channel."""
    link = rf"{re.escape(gw.url)}/media/{channel}/[A-Za-z0-9_-]+\?exp=\d+&sig=[A-Za-z0-9_-]+"
    return re.compile("".join(link if part == "{media}" else re.escape(part)
                              for part in re.split(r"(\{media\})", expected)))


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read()


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_sample(path: Path) -> None:
    sample = SAMPLE_DATA[path]
    channel, expect, payload = path.parent.name, sample["expect"], sample["payload"]
    if expect.get("known_limitation"):
        pytest.xfail(expect["known_limitation"])
    async with gateway() as (gw, fakes):
        status, body = await deliver(gw, fakes, channel, payload)
        assert status == 200, body
        await gw.idle()
        said = agent_messages(gw)
        if "ignored" in expect:
            assert said == [], f"should be ignored ({expect['ignored']})"
            assert fakes.replies(channel) == []
            if "response_contains" in expect:
                assert expect["response_contains"] in body
            return
        assert len(said) == 1, said
        assert pattern(expect["agent"], gw, channel).fullmatch(said[0]), said[0]
        assert not [s for s in fakes.secrets() if s in said[0]], "a secret reached the agent"
        assert fakes.replies(channel), "the person got no answer"
        if "reply_to_user_ref" in expect:
            assert fakes.fb.texts_to_ref(expect["reply_to_user_ref"])
        for link in re.findall(rf"{re.escape(gw.url)}/media/\S+?(?=\])", said[0]):
            await check_link(gw, channel, link, json.dumps(payload))


async def check_link(gw: GatewayUnderTest, channel: str, link: str, payload: str) -> None:
    """Where the fakes can serve the file, the link works; Meta's CDN is not faked, so its reference
    must name the payload's CDN URL (the token-free part the gateway will fetch)."""
    if channel in ("telegram", "slack"):
        assert (await fetch(link))[0] == 200
        return
    opaque, query = link.split("/media/")[1].split("/", 1)[1].split("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    ref = gw.services.media.check(channel, opaque, params["exp"], params["sig"])
    assert json.loads(ref)["u"].replace("/", "\\/") in payload.replace("/", "\\/")
