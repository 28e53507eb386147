"""Messenger and Instagram media end to end: attachments are answered, links are the gateway's own."""

from __future__ import annotations

import re
import time
from typing import Any

import aiohttp
import pytest

from tests.fakes.meta import PAGE_ID, PSID, payload, post_signed
from tests.test_meta_gateway import chats, gateway

_LINK = re.compile(r"https?://\S+?(?=\])")


def attachment_item(*attachments: dict[str, Any], mid: str = "m_media_1", sender: dict[str, str] | None = None,
                    text: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"mid": mid, "attachments": list(attachments)}
    if text:
        message["text"] = text
    return {"sender": sender or {"id": PSID}, "recipient": {"id": PAGE_ID},
            "timestamp": int(time.time() * 1000), "message": message}


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read()


@pytest.mark.parametrize("kind", ["messenger", "instagram"])
async def test_an_image_alone_is_answered_and_its_link_outlives_the_cdn_url(kind: str) -> None:
    async with gateway(kind) as (gw, graph):
        image = {"type": "image", "payload": {"url": graph.cdn_url("photo1.jpg")}}
        obj = "page" if kind == "messenger" else "instagram"
        status, _ = await post_signed(f"{gw.url}/webhooks/fb", payload([attachment_item(image)], obj=obj))
        assert status == 200
        await gw.idle()
        [said] = chats(gw)
        assert said.startswith("[The user sent a photo: ")
        [link] = _LINK.findall(said)
        assert link.startswith(f"{gw.url}/media/fb/") and graph.token not in link and "cdn" not in link
        assert len(graph.texts_to(PSID)) == 1
        assert await fetch(link) == (200, b"cdn file photo1.jpg")
        graph.expired.add("photo1.jpg")  # Meta's CDN links expire; the gateway asks Graph again
        graph.attachments["m_media_1"] = ["photo1.jpg"]
        assert await fetch(link) == (200, b"cdn file photo1.jpg.fresh")


async def test_likes_links_and_several_attachments_read_naturally() -> None:
    async with gateway() as (gw, graph):
        like = {"type": "image", "payload": {"url": graph.cdn_url("like.png"), "sticker_id": 369239263222822}}
        shared = {"type": "fallback", "payload": {"url": "https://example.com/article", "title": "An article"}}
        clips = [{"type": "video", "payload": {"url": graph.cdn_url("a.mp4")}},
                 {"type": "audio", "payload": {"url": graph.cdn_url("b.mp4")}}]
        body = payload([attachment_item(like, mid="m.like"), attachment_item(shared, mid="m.link"),
                        attachment_item(*clips, mid="m.clips")])
        await post_signed(f"{gw.url}/webhooks/fb", body)
        await gw.idle()
        like_text, link_text, clips_text = chats(gw)
        assert like_text.startswith("👍\n\n[The user sent a sticker: ")
        assert link_text == "[The user shared a link: An article: https://example.com/article]"
        assert re.fullmatch(r"\[The user sent a video: \S+\]\n\[The user sent an audio message: \S+\]", clips_text)


async def test_a_chat_plugin_guest_is_answered_through_user_ref() -> None:
    async with gateway() as (gw, graph):
        item = {"sender": {"user_ref": "guest-5551"}, "recipient": {"id": PAGE_ID},
                "timestamp": int(time.time() * 1000),
                "postback": {"title": "Get Started", "payload": "GET_STARTED", "mid": "m.pb.1"}}
        await post_signed(f"{gw.url}/webhooks/fb", payload([item]))
        await gw.idle()
        assert chats(gw) == ["Get Started"]
        assert len(graph.texts_to_ref("guest-5551")) == 1


async def test_echoes_of_our_own_media_edits_and_reactions_are_ignored() -> None:
    async with gateway() as (gw, graph):
        echo = attachment_item({"type": "image", "payload": {"url": graph.cdn_url("x.jpg")}}, mid="m.echo")
        echo["message"]["is_echo"] = True
        now = int(time.time() * 1000)
        edit = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": now,
                "message_edit": {"mid": "m.1", "text": "fixed", "num_edit": 1}}
        reaction = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": now,
                    "reaction": {"mid": "m.1", "action": "react", "emoji": "❤", "reaction": "love"}}
        await post_signed(f"{gw.url}/webhooks/fb", payload([echo, edit, reaction]))
        await gw.idle()
        assert chats(gw) == [] and graph.sent() == []


async def test_an_instagram_story_reply_names_the_story() -> None:
    async with gateway("instagram") as (gw, graph):
        item = attachment_item(mid="m.story", text="Love this!")
        del item["message"]["attachments"]
        item["message"]["reply_to"] = {"story": {"url": graph.cdn_url("story9.mp4"), "id": "179"}}
        await post_signed(f"{gw.url}/webhooks/fb", payload([item], obj="instagram"))
        await gw.idle()
        [said] = chats(gw)
        caption, line = said.split("\n\n")
        assert caption == "Love this!" and line.startswith("[The user replied to a story: ")
        assert await fetch(_LINK.findall(said)[0]) == (200, b"cdn file story9.mp4")
