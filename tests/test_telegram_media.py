"""Telegram media end to end: media-only messages are answered, and the agent's links hide the token."""

from __future__ import annotations

import re
import time
from typing import Any

import aiohttp

from tests.fakes.telegram import post_update, text_update, user
from tests.test_telegram_gateway import CHAT, chats, gateway

_LINK = re.compile(r"https?://\S+?(?=\])")


def media_update(**content: Any) -> dict[str, Any]:
    update = text_update("x", chat_id=CHAT, user_id=CHAT)
    del update["message"]["text"]
    update["message"].update(content)
    return update


VOICE = {"voice": {"file_id": "AwACAgIAAxkBAAIBvoice", "file_unique_id": "AgADvoice", "duration": 7,
                   "mime_type": "audio/ogg", "file_size": 23000}}
PHOTO = {"photo": [
    {"file_id": "AgACsmall", "file_unique_id": "s", "width": 90, "height": 67, "file_size": 1200},
    {"file_id": "AgACbig", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 99000}]}


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read()


async def test_a_voice_note_alone_is_answered_with_a_link_that_hides_the_token() -> None:
    async with gateway() as (gw, tg):
        assert (await post_update(f"{gw.url}/webhooks/tg", media_update(**VOICE))).status == 200
        await gw.idle()
        [said] = chats(gw)
        assert said.startswith("[The user sent a voice message (audio/ogg, 0:07): ")
        [link] = _LINK.findall(said)
        assert link.startswith(f"{gw.url}/media/tg/")
        assert tg.token not in said and tg.token.split(":")[1] not in said
        assert len(tg.chat(CHAT)) == 1  # the person got an answer
        status, body = await fetch(link)
        assert (status, body) == (200, b"content of AwACAgIAAxkBAAIBvoice")
        assert tg.calls_to("getFile")[-1]["file_id"] == "AwACAgIAAxkBAAIBvoice"


async def test_a_photo_sends_its_caption_first_and_the_largest_size() -> None:
    async with gateway() as (gw, _tg):
        await post_update(f"{gw.url}/webhooks/tg", media_update(caption="What is this plant?", **PHOTO))
        await gw.idle()
        [said] = chats(gw)
        caption, line = said.split("\n\n")
        assert caption == "What is this plant?"
        assert line.startswith("[The user sent a photo (image/jpeg, 1280x960): ")
        assert (await fetch(_LINK.findall(said)[0]))[1] == b"content of AgACbig"


async def test_a_sticker_is_its_emoji() -> None:
    async with gateway() as (gw, _tg):
        sticker = {"file_id": "CAACsticker", "file_unique_id": "st", "type": "regular", "width": 512,
                   "height": 512, "is_animated": False, "is_video": False, "emoji": "👍"}
        await post_update(f"{gw.url}/webhooks/tg", media_update(sticker=sticker))
        await gw.idle()
        [said] = chats(gw)
        assert said.split("\n\n")[0] == "👍"
        assert "[The user sent a sticker (image/webp): " in said


async def test_locations_and_contacts_are_described_without_files() -> None:
    async with gateway() as (gw, _tg):
        await post_update(f"{gw.url}/webhooks/tg", media_update(location={"latitude": 52.52, "longitude": 13.405}))
        await post_update(f"{gw.url}/webhooks/tg", media_update(
            contact={"phone_number": "+4915112345678", "first_name": "Grace", "last_name": "Hopper"}))
        await gw.idle()
        assert chats(gw) == [
            "[The user shared a location: 52.520000, 13.405000: "
            "https://www.openstreetmap.org/?mlat=52.520000&mlon=13.405000]",
            "[The user shared a contact: Grace Hopper, +4915112345678]",
        ]


async def test_service_messages_and_unaddressed_group_media_are_ignored() -> None:
    async with gateway() as (gw, tg):
        joined = media_update(new_chat_members=[user(77, "Bob")])
        group_photo = media_update(**PHOTO)
        group_photo["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "Team"}
        for update in (joined, group_photo):
            assert (await post_update(f"{gw.url}/webhooks/tg", update)).status == 200
        await gw.idle()
        assert chats(gw) == []
        assert tg.chat(CHAT) == []


async def test_a_tampered_or_expired_link_fetches_nothing() -> None:
    async with gateway() as (gw, tg):
        await post_update(f"{gw.url}/webhooks/tg", media_update(**VOICE))
        await gw.idle()
        [link] = _LINK.findall(chats(gw)[0])
        other = gw.services.media.link("tg", "AgACbig").split("?")[0]
        assert (await fetch(other + "?" + link.split("?")[1]))[0] == 403  # a signature is for one file
        expires = int(re.search(r"exp=(\d+)", link).group(1))  # type: ignore[union-attr]
        assert (await fetch(link.replace(f"exp={expires}", f"exp={expires + 10}")))[0] == 403
        past = int(time.time()) - 1
        stale = gw.services.media._sign("tg", link.split("/media/tg/")[1].split("?")[0], past)
        assert (await fetch(f"{link.split('?')[0]}?exp={past}&sig={stale}"))[0] == 410
        tg.missing_files.add("AwACAgIAAxkBAAIBvoice")
        assert (await fetch(link))[0] == 404
        assert tg.downloads == []
