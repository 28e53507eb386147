"""Messenger and Instagram end to end: a real gateway, the Chatbase emulator and the fake Graph API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from channels.meta.events import feedback_payload
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.fakes.meta import (
    APP_SECRET,
    PSID,
    VERIFY_TOKEN,
    FakeGraph,
    payload,
    post_signed,
    receipt_items,
    text_item,
)


@asynccontextmanager
async def gateway(kind: str = "messenger") -> AsyncIterator[tuple[GatewayUnderTest, FakeGraph]]:
    async with FakeGraph(max_text=2000 if kind == "messenger" else 1000) as graph:
        config = {"type": kind, "page_access_token": graph.token, "app_secret": APP_SECRET,
                  "verify_token": VERIFY_TOKEN, "api_base": graph.api_base}
        async with running_gateway({"fb": config}) as gw:
            yield gw, graph


def chats(gw: GatewayUnderTest) -> list[str]:
    return [r.json["message"] for r in gw.emulator.requests if r.path.endswith("/chat") and r.json.get("message")]


async def test_the_verification_handshake() -> None:
    async with gateway() as (gw, _), aiohttp.ClientSession() as http:
        good = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "CHALLENGE_ACCEPTED"}
        async with http.get(f"{gw.url}/webhooks/fb", params=good) as resp:
            assert resp.status == 200 and await resp.text() == "CHALLENGE_ACCEPTED"
        async with http.get(f"{gw.url}/webhooks/fb", params={**good, "hub.verify_token": "guess"}) as resp:
            assert resp.status == 403 and "CHALLENGE_ACCEPTED" not in await resp.text()


async def test_a_batch_is_answered_item_by_item_and_echoes_are_not() -> None:
    async with gateway() as (gw, graph):
        body = payload(
            [text_item("first question", sender="u1", mid="m.1"), text_item("our own echo", echo=True),
             *receipt_items()],
            [text_item("second question", sender="u2", mid="m.2")],
        )
        status, text = await post_signed(f"{gw.url}/webhooks/fb", body)
        assert status == 200 and text == "EVENT_RECEIVED"
        await gw.idle()
        assert sorted(chats(gw)) == ["first question", "second question"]
        assert graph.texts_to("u1") == ['You said: "first question". This is message 1 of this conversation.']
        assert graph.texts_to("u2") == ['You said: "second question". This is message 1 of this conversation.']
        assert graph.actions_to("u1") == ["typing_on"]


async def test_bad_signatures_are_refused_before_anything_happens() -> None:
    async with gateway() as (gw, graph):
        body = payload([text_item("hi")])
        assert (await post_signed(f"{gw.url}/webhooks/fb", body, secret="wrong"))[0] == 403
        assert (await post_signed(f"{gw.url}/webhooks/fb", body, secret=None))[0] == 403
        await gw.idle()
        assert chats(gw) == [] and graph.calls == []


async def test_a_redelivered_mid_is_answered_once() -> None:
    async with gateway() as (gw, graph):
        body = payload([text_item("just once", mid="m.same")])
        for _ in range(3):
            assert (await post_signed(f"{gw.url}/webhooks/fb", body))[0] == 200
        await gw.idle()
        assert chats(gw) == ["just once"] and len(graph.texts_to(PSID)) == 1


async def test_a_9000_character_answer_arrives_in_order_in_2000_character_parts() -> None:
    async with gateway() as (gw, graph):
        await post_signed(f"{gw.url}/webhooks/fb", payload([text_item("long 9000")]))
        await gw.idle()
        parts = graph.texts_to(PSID)
        assert len(parts) == 5 and all(len(p) <= 2000 for p in parts)
        assert all(p.endswith(".") for p in parts)  # cut at sentence ends
        numbers = [int(n) for n in re.findall(r"This is sentence (\d+) of", " ".join(parts))]
        assert numbers == list(range(1, len(numbers) + 1)) and sum(map(len, parts)) >= 9000 - len(parts)
        messages = [b["message"] for b in graph.sent() if "message" in b]
        assert [("quick_replies" in m) for m in messages] == [False] * 4 + [True]


async def test_a_feedback_quick_reply_reaches_the_agent() -> None:
    async with gateway() as (gw, graph):
        await post_signed(f"{gw.url}/webhooks/fb", payload([text_item("rate me")]))
        await gw.idle()
        [message] = [b["message"] for b in graph.sent() if "message" in b]
        thumbs_down = message["quick_replies"][1]
        assert thumbs_down["title"] == "👎"
        body = payload([text_item("👎", quick_reply=thumbs_down["payload"])])
        await post_signed(f"{gw.url}/webhooks/fb", body)
        await gw.idle()
        [patch] = [r for r in gw.emulator.requests if r.method == "PATCH"]
        assert patch.json == {"feedback": "negative"}
        conversation, message_id = re.fullmatch(r".*/conversations/([^/]+)/messages/([^/]+)/feedback",
                                                patch.path).groups()  # type: ignore[union-attr]
        assert thumbs_down["payload"] == feedback_payload("-", message_id, conversation)
        assert chats(gw) == ["rate me"]  # the tap is feedback, not a question


async def test_a_rate_limit_is_waited_out_and_delivered_once() -> None:
    async with gateway() as (gw, graph):
        graph.fail_next(429, 613, message="(#613) Calls to this api have exceeded the rate limit.",
                        headers={"Retry-After": "1"})
        await post_signed(f"{gw.url}/webhooks/fb", payload([text_item("busy?")]))
        await gw.idle(timeout=20)
        assert graph.texts_to(PSID) == ['You said: "busy?". This is message 1 of this conversation.']
        assert [c.status for c in graph.calls if "message" in c.body] == [429, 200]


async def test_outside_the_24_hour_window_is_counted_not_retried() -> None:
    async with gateway() as (gw, graph):
        graph.fail_next(400, 10, subcode=2018278, message="(#10) This message is sent outside of allowed window.")
        await post_signed(f"{gw.url}/webhooks/fb", payload([text_item("late reply")]))
        await gw.idle()
        assert [c.status for c in graph.calls if "message" in c.body] == [400]
        metrics = gw.services.metrics.render().decode()
        counted = r'switchboard_delivery_failures_total\{channel="fb",reason="OutsideMessagingWindow"\} 1'
        assert re.search(counted, metrics)


async def test_instagram_answers_in_1000_character_parts() -> None:
    async with gateway("instagram") as (gw, graph):
        body = payload([text_item("long 3000", sender="igsid9", page="1784140")], obj="instagram")
        assert (await post_signed(f"{gw.url}/webhooks/fb", body))[0] == 200
        await gw.idle()
        parts = graph.texts_to("igsid9")
        assert len(parts) >= 3 and all(len(p.encode()) <= 1000 for p in parts)
