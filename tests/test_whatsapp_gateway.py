"""WhatsApp Cloud API end to end: a real gateway, the Chatbase emulator and the fake Cloud API."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels.meta import WhatsAppChannel
from gateway.errors import ChannelPermanentError
from switchboard.testing import GatewayUnderTest, running_gateway
from switchboard.testing.whatsapp import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    VERIFY_TOKEN,
    WA_ID,
    WINDOW_CLOSED_ERROR,
    FakeWhatsApp,
    button_tap,
    message,
    payload,
    post_signed,
    status,
    text,
)


def wa_config(wa: FakeWhatsApp, **extra: Any) -> dict[str, Any]:
    return {"type": "whatsapp", "phone_number_id": PHONE_NUMBER_ID, "access_token": wa.token,
            "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "api_base": wa.api_base, **extra}


@asynccontextmanager
async def gateway(**extra: Any) -> AsyncIterator[tuple[GatewayUnderTest, FakeWhatsApp]]:
    async with FakeWhatsApp() as wa, running_gateway({"wa": wa_config(wa, **extra)}) as gw:
        yield gw, wa


async def send(gw: GatewayUnderTest, body: bytes, secret: str | None = APP_SECRET) -> int:
    status_code, _ = await post_signed(f"{gw.url}/webhooks/wa", body, secret=secret)
    return status_code


def chats(gw: GatewayUnderTest) -> list[str]:
    return [r.json["message"] for r in gw.emulator.requests if r.path.endswith("/chat") and r.json.get("message")]


def answer(text_: str, n: int = 1) -> str:
    return f'You said: "{text_}". This is message {n} of this conversation.'


async def test_the_verification_handshake() -> None:
    async with gateway() as (gw, _), aiohttp.ClientSession() as http:
        good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
        async with http.get(f"{gw.url}/webhooks/wa", params=good) as resp:
            assert resp.status == 200 and await resp.text() == "1158201444"
        async with http.get(f"{gw.url}/webhooks/wa", params={**good, "hub.verify_token": "guess"}) as resp:
            assert resp.status == 403 and "1158201444" not in await resp.text()


async def test_a_text_is_marked_read_with_typing_then_answered_with_buttons() -> None:
    async with gateway() as (gw, wa):
        item = text("Do you ship to Canada?")
        assert await send(gw, payload([item])) == 200
        await gw.idle()
        assert chats(gw) == ["Do you ship to Canada?"]
        assert wa.reads() == [{"messaging_product": "whatsapp", "status": "read", "message_id": item["id"],
                               "typing_indicator": {"type": "text"}}]
        first_send = next(i for i, c in enumerate(wa.calls) if "to" in c.body)
        assert wa.calls.index(next(c for c in wa.calls if c.body.get("status") == "read")) < first_send
        [sent] = wa.messages_to(WA_ID)
        assert sent["type"] == "interactive"
        assert sent["interactive"]["body"]["text"] == answer("Do you ship to Canada?")
        titles = [b["reply"]["title"] for b in sent["interactive"]["action"]["buttons"]]
        assert titles == ["👍", "👎", "Try again"]


async def test_a_bad_signature_is_401_and_nothing_happens() -> None:
    async with gateway() as (gw, wa):
        body = payload([text("hi")])
        assert await send(gw, body, secret="wrong") == 401
        assert await send(gw, body, secret=None) == 401
        await gw.idle()
        assert chats(gw) == [] and wa.calls == []


async def test_a_retried_wamid_is_answered_once() -> None:
    async with gateway() as (gw, wa):
        body = payload([text("just once", wamid="wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUFFRkZFRQA=")])
        for _ in range(3):
            assert await send(gw, body) == 200
        await gw.idle()
        assert chats(gw) == ["just once"] and wa.texts_to(WA_ID) == [answer("just once")]


async def test_a_photo_without_caption_is_answered_and_its_link_serves_the_photo() -> None:
    async with gateway() as (gw, wa):
        wa.media["2754859441498128"] = ("image/jpeg", b"\xff\xd8 a real photo")
        photo = message("image", {"mime_type": "image/jpeg", "sha256": "81d3bd8a", "id": "2754859441498128"})
        await send(gw, payload([photo]))
        await gw.idle()
        [asked] = chats(gw)
        link = re.fullmatch(r"\[The user sent a photo \(image/jpeg\): (\S+)\]", asked)
        assert link and link.group(1).startswith(f"{gw.url}/media/wa/") and wa.token not in asked
        assert len(wa.texts_to(WA_ID)) == 1
        async with aiohttp.ClientSession() as http:
            async with http.get(link.group(1)) as resp:  # the agent follows the link
                assert resp.status == 200 and resp.content_type == "image/jpeg"
                assert await resp.read() == b"\xff\xd8 a real photo"
            async with http.get(link.group(1).replace("sig=", "sig=x")) as resp:
                assert resp.status == 403  # a link changed by anyone is refused


async def test_statuses_are_never_turns_and_a_closed_window_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async with gateway() as (gw, wa):
        await send(gw, payload([text("hello")]))
        await gw.idle()
        [ours] = wa.wamids()
        for state in ("sent", "delivered", "read"):
            assert await send(gw, payload(statuses=[status(ours, state)])) == 200
        failed = payload(statuses=[status(ours, "failed", error=WINDOW_CLOSED_ERROR)])
        assert await send(gw, failed) == 200
        assert await send(gw, failed) == 200  # Meta redelivers
        await gw.idle()
        assert chats(gw) == ["hello"] and len(wa.messages_to(WA_ID)) == 1
    notes = [r.getMessage() for r in caplog.records if "24-hour window" in r.getMessage()]
    assert len(notes) == 1
    assert f"reply to {WA_ID} not delivered" in notes[0] and "Re-engagement message" in notes[0]


async def test_feedback_buttons_reach_the_agent() -> None:
    async with gateway() as (gw, wa):
        await send(gw, payload([text("rate me")]))
        await gw.idle()
        [sent] = wa.messages_to(WA_ID)
        thumbs_down = sent["interactive"]["action"]["buttons"][1]["reply"]
        tap = button_tap(thumbs_down["id"], thumbs_down["title"], replied_to=wa.wamids()[0])
        await send(gw, payload([tap]))
        await gw.idle()
        [patch] = [r for r in gw.emulator.requests if r.method == "PATCH"]
        assert patch.json == {"feedback": "negative"}
        assert re.fullmatch(r".*/conversations/[^/]+/messages/[^/]+/feedback", patch.path)
        assert chats(gw) == ["rate me"]  # the tap is feedback, not a question
        assert wa.reads()[-1] == {"messaging_product": "whatsapp", "status": "read", "message_id": tap["id"]}


async def test_the_retry_button_regenerates_the_answer() -> None:
    async with gateway() as (gw, wa):
        await send(gw, payload([text("try me")]))
        await gw.idle()
        [sent] = wa.messages_to(WA_ID)
        again = sent["interactive"]["action"]["buttons"][2]["reply"]
        await send(gw, payload([button_tap(again["id"], again["title"])]))
        await gw.idle()
        assert [r for r in gw.emulator.requests if r.path.endswith("/retry")]
        assert chats(gw) == ["try me"] and len(wa.messages_to(WA_ID)) == 2


async def test_a_long_answer_is_split_at_4096_and_the_buttons_ride_on_a_short_last_part() -> None:
    async with gateway() as (gw, wa):
        await send(gw, payload([text("long 9000")]))
        await gw.idle()
        messages = wa.messages_to(WA_ID)
        parts = wa.texts_to(WA_ID)
        assert all(len(p) <= 4096 for p in parts) and len(parts[-1]) <= 1024
        assert [m["type"] for m in messages] == ["text"] * (len(messages) - 1) + ["interactive"]
        numbers = [int(n) for n in re.findall(r"This is sentence (\d+) of", " ".join(parts))]
        assert numbers == list(range(1, len(numbers) + 1)) and sum(map(len, parts)) >= 9000 - len(parts)


async def test_no_buttons_when_feedback_buttons_is_off() -> None:
    async with gateway(feedback_buttons=False) as (gw, wa):
        await send(gw, payload([text("plain please")]))
        await gw.idle()
        assert [m["type"] for m in wa.messages_to(WA_ID)] == ["text"]


async def test_whatsapp_styles_are_used() -> None:
    async with gateway() as (gw, wa):
        await send(gw, payload([text("markdown")]))
        await gw.idle()
        [body] = wa.texts_to(WA_ID)
        assert body.startswith("*Markdown sample*\n\nThis answer has *bold*, _italic_, ~strike~")
        assert "See the example site (https://example.com) for more." in body and "**" not in body


async def test_a_rate_limit_is_waited_out_and_a_5xx_retried_and_each_delivered_once() -> None:
    async with gateway(feedback_buttons=False) as (gw, wa):
        wa.fail_next(400, 130429, message="(#130429) Rate limit hit", headers={"Retry-After": "1"})
        await send(gw, payload([text("busy?")]))
        await gw.idle(timeout=20)
        wa.fail_next(500, 131000, message="(#131000) Something went wrong")
        await send(gw, payload([text("again?")]))
        await gw.idle(timeout=20)
        assert wa.texts_to(WA_ID) == [answer("busy?"), answer("again?", 2)]
        assert [c.status for c in wa.calls if "to" in c.body] == [400, 200, 500, 200]


async def test_a_window_closed_at_send_time_is_counted_not_retried() -> None:
    async with gateway() as (gw, wa):
        wa.fail_next(400, 131047, message="Re-engagement message",
                     details="Message failed to send because more than 24 hours have passed")
        await send(gw, payload([text("late reply")]))
        await gw.idle()
        assert [c.status for c in wa.calls if "to" in c.body] == [400]
        counted = r'switchboard_delivery_failures_total\{channel="wa",reason="WhatsAppWindowClosed"\} 1'
        assert re.search(counted, gw.services.metrics.render().decode())


async def test_typing_is_renewed_while_a_slow_answer_is_still_coming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("channels.meta.whatsapp.TYPING_RENEW", 0.05)
    async with gateway() as (gw, wa):
        gw.emulator.faults.token_delay = 0.05  # the answer streams for about a second
        item = text("take your time")
        await send(gw, payload([item]))
        await gw.idle()
        reads = wa.reads()
        assert len(reads) >= 3 and all(r == {"messaging_product": "whatsapp", "status": "read",
                                             "message_id": item["id"], "typing_indicator": {"type": "text"}}
                                       for r in reads)
        assert len(wa.messages_to(WA_ID)) == 1


async def test_inbound_media_is_fetched_with_the_token_the_agent_never_sees() -> None:
    async with gateway() as (gw, wa):
        wa.media["1003383421387256"] = ("audio/ogg", b"OggS voice bytes")
        channel = gw.channel("wa")
        assert isinstance(channel, WhatsAppChannel)
        source = await channel.resolve_media("1003383421387256")
        async with aiohttp.ClientSession() as http:
            async with http.get(source.url) as resp:
                assert resp.status == 401  # Meta's media URL is useless without the token
            async with http.get(source.url, headers=dict(source.headers)) as resp:
                assert resp.status == 200 and await resp.read() == b"OggS voice bytes"
        with pytest.raises(ChannelPermanentError):
            await channel.resolve_media("no-such-media")
        gone = channel.media_link("no-such-media")
        async with aiohttp.ClientSession() as http, http.get(gone) as resp:
            assert resp.status == 404  # a media item Meta no longer has


SAMPLES = json.loads((Path(__file__).parent / "data/whatsapp/webhooks.json").read_text())["samples"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["name"])
async def test_metas_documented_webhook_examples(sample: dict[str, Any]) -> None:
    async with gateway() as (gw, wa):
        body = json.dumps(sample["payload"]).encode()
        assert await send(gw, body) == 200
        assert await send(gw, body) == 200  # a redelivery changes nothing
        await gw.idle()
        expect, asked = sample["expect"], chats(gw)
        if expect.get("ignored"):
            assert asked == [] and wa.messages_to(WA_ID) == []
            return
        [question] = asked
        if "text" in expect:
            assert question == expect["text"]
        else:
            assert question.startswith(expect["text_starts"])
        assert len(wa.messages_to(WA_ID)) == 1
