"""Slack files end to end: a file alone is answered, its link is the gateway's, Slackbot is ignored."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from tests.fakes.slack import FakeSlack
from tests.fakes.slack_inbound import event_body, message
from tests.test_slack_e2e import chats, gateway, post, texts


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake

_LINK = re.compile(r"https?://\S+?(?=\])")

PDF = {"id": "F0PDF", "name": "invoice.pdf", "title": "invoice.pdf", "mimetype": "application/pdf",
       "filetype": "pdf", "size": 48213, "mode": "hosted",
       "url_private": "https://files.slack.com/files-pri/T0001-F0PDF/invoice.pdf",
       "url_private_download": "https://files.slack.com/files-pri/T0001-F0PDF/download/invoice.pdf"}


async def test_a_file_alone_in_a_dm_is_answered_with_a_gateway_link(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        event = message("", files=[PDF], upload=True)
        assert (await post(gw, http, event_body(event, event_id="EvFILE")))[0] == 200
        await gw.idle()
        [chat] = chats(gw)
        said = chat["message"]
        assert said.startswith('[The user sent a file "invoice.pdf" (application/pdf, 48 KB): ')
        [link] = _LINK.findall(said)
        assert link.startswith(f"{gw.url}/media/slack/")
        assert slack.token not in said and "files.slack.com" not in said
        assert len(texts(slack, "D0001", None)) == 1
        async with http.get(link) as resp:
            assert (resp.status, await resp.read()) == (200, b"slack file F0PDF")
            assert resp.headers["Content-Disposition"] == 'inline; filename="download"'
        slack.missing_files.add("F0PDF")
        async with http.get(link) as resp:
            assert resp.status == 404


async def test_a_comment_comes_before_the_files(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        shot = {**PDF, "id": "F0PNG", "name": "screenshot.png", "mimetype": "image/png", "size": 1_234_567}
        await post(gw, http, event_body(message("Why does this fail?", files=[shot]), event_id="EvPNG"))
        await gw.idle()
        said = chats(gw)[0]["message"]
        assert said.split("\n\n")[0] == "Why does this fail?"
        assert '[The user sent an image "screenshot.png" (image/png, 1.2 MB): ' in said


async def test_a_me_message_is_a_person_writing(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await post(gw, http, event_body(message("waves hello", subtype="me_message"), event_id="EvME"))
        await gw.idle()
        assert [c["message"] for c in chats(gw)] == ["waves hello"]


async def test_slackbot_and_hidden_messages_are_ignored(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        reminder = message("Reminder: file the report.", user="USLACKBOT")
        hidden = message("bookkeeping", hidden=True, ts="1690000000.000300")
        await post(gw, http, event_body(reminder, event_id="EvBOT"))
        await post(gw, http, event_body(hidden, event_id="EvHID"))
        await gw.idle()
        assert chats(gw) == []
        assert texts(slack, "D0001", None) == []
