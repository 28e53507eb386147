"""Teams end to end: a real gateway, the Chatbase emulator and the fake Bot Framework (real JWTs)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from switchboard.testing import GatewayUnderTest, running_gateway, wait_until
from switchboard.testing.teams import CHANNEL, GROUP, PERSONAL, FakeTeams


@asynccontextmanager
async def gateway(sections: dict[str, Any] | None = None, **extra: Any
                  ) -> AsyncIterator[tuple[GatewayUnderTest, FakeTeams]]:
    async with FakeTeams() as teams:
        config = teams.channel_config(edit_interval=0.05, **extra)
        async with running_gateway({"teams": config}, sections) as gw:
            yield gw, teams


def url(gw: GatewayUnderTest) -> str:
    return f"{gw.url}/webhooks/teams"


def chats(gw: GatewayUnderTest) -> list[dict[str, Any]]:
    return [r.json for r in gw.emulator.requests if r.path.endswith("/chat")]


def ai_labelled(activity: dict[str, Any]) -> bool:
    return any("AIGeneratedContent" in (e.get("additionalType") or []) for e in activity.get("entities", []))


async def test_a_signed_personal_message_is_answered_with_a_labelled_message() -> None:
    async with gateway(streaming=False) as (gw, teams):
        status, _ = await teams.send(url(gw), teams.message("hello there"))
        assert status == 200
        await gw.idle()
        [answer] = teams.conversation(PERSONAL)
        assert answer.text == 'You said: "hello there". This is message 1 of this conversation.'
        assert ai_labelled(answer.activity) and answer.activity["channelData"] == {"feedbackLoopEnabled": True}
        assert chats(gw)[0]["message"] == "hello there"


@pytest.mark.parametrize("forgery", ["wrong audience", "wrong issuer", "expired", "unknown key", "not signed",
                                     "no token", "other service url"])
async def test_a_forged_or_stale_token_is_refused_and_never_processed(forgery: str) -> None:
    async with gateway() as (gw, teams):
        now = int(time.time())
        token = {
            "wrong audience": lambda: teams.token(aud="99999999-2222-3333-4444-555555555555"),
            "wrong issuer": lambda: teams.token(iss="https://sts.windows.net/evil-tenant/"),
            "expired": lambda: teams.token(exp=now - 900, nbf=now - 4000, iat=now - 4000),  # past the 5 min skew
            "unknown key": lambda: teams.token(rogue=True, kid="attacker-key"),
            "not signed": lambda: teams.token(rogue=True),  # a published kid, the wrong key
            "no token": lambda: "",
            "other service url": lambda: teams.token(serviceurl="https://evil.example/"),
        }[forgery]()
        status, _ = await teams.send(url(gw), teams.message("let me in"), authorization=f"Bearer {token}")
        assert status in (401, 403)
        await gw.idle()
        assert chats(gw) == [] and teams.posted == {}
        # The same activity with a real token goes through: the refusal was about the token.
        assert (await teams.send(url(gw), teams.message("now properly")))[0] == 200
        await gw.idle()
        assert len(teams.conversation(PERSONAL)) == 1


async def test_a_personal_chat_streams_informative_then_chunks_then_final() -> None:
    async with gateway() as (gw, teams):
        gw.emulator.faults.token_delay = 0.01
        assert (await teams.send(url(gw), teams.message("long 600")))[0] == 200
        await gw.idle()
        [stream] = teams.streams.values()
        kinds = [next(e for e in s["entities"] if e["type"] == "streaminfo")["streamType"] for s in stream.steps]
        assert kinds[0] == "informative" and kinds[-1] == "final" and stream.ended
        assert kinds.count("streaming") >= 2, kinds
        assert stream.steps[0]["text"] == "Thinking…"
        [answer] = teams.conversation(PERSONAL)
        assert answer.id == stream.id and answer.text.endswith("of the long answer.")
        assert ai_labelled(answer.activity) and answer.activity["type"] == "message"


async def test_a_channel_mention_is_answered_in_its_thread_without_the_mention() -> None:
    async with gateway() as (gw, teams):
        gw.emulator.faults.token_delay = 0.005
        asked = teams.message("what is our leave policy?", conversation=CHANNEL, kind="channel", mention=True)
        ignored = teams.message("just chatting", conversation=CHANNEL, kind="channel")
        for activity in (asked, ignored):
            assert (await teams.send(url(gw), activity))[0] == 200
        await gw.idle()
        assert [c["message"] for c in chats(gw)] == ["what is our leave policy?"]
        thread = asked["conversation"]["id"]
        [answer] = teams.conversation(thread)
        assert answer.text.startswith('You said: "what is our leave policy?"')
        assert teams.streams == {}  # no streaming outside personal chats: post, then update
        assert ai_labelled(answer.activity)


async def test_a_group_chat_grows_one_message_by_updates() -> None:
    async with gateway() as (gw, teams):
        gw.emulator.faults.token_delay = 0.01
        assert (await teams.send(url(gw), teams.message("long 300", conversation=GROUP, kind="groupChat",
                                                        mention=True)))[0] == 200
        await gw.idle()
        [answer] = teams.conversation(GROUP)
        assert answer.edits >= 1 and answer.text.endswith("of the long answer.")
        assert teams.sent("update")


async def test_builtin_feedback_reaches_the_agent() -> None:
    async with gateway(streaming=False) as (gw, teams):
        await teams.send(url(gw), teams.message("rate me"))
        await gw.idle()
        [answer] = teams.conversation(PERSONAL)
        status, body = await teams.send(url(gw), teams.feedback(answer.id, "dislike"))
        assert status == 200 and body == "{}"
        await gw.idle()
        [patch] = [r for r in gw.emulator.requests if r.method == "PATCH"]
        assert patch.json == {"feedback": "negative"} and patch.path.endswith("/feedback")


async def test_card_buttons_give_feedback_and_retry() -> None:
    async with gateway(feedback="card") as (gw, teams):
        await teams.send(url(gw), teams.message("rate me", conversation=GROUP, kind="groupChat", mention=True))
        await gw.idle()
        [answer] = teams.conversation(GROUP)
        card = answer.activity["attachments"][0]["content"]
        up, _, retry = card["actions"]
        status, body = await teams.send(url(gw), teams.card_action(up["data"], up["verb"], answer_id=answer.id,
                                                                   conversation=GROUP, kind="groupChat"))
        assert status == 200 and "Thanks" in body
        await teams.send(url(gw), teams.card_action(retry["data"], retry["verb"], answer_id=answer.id,
                                                    conversation=GROUP, kind="groupChat"))
        await gw.idle()
        [patch] = [r for r in gw.emulator.requests if r.method == "PATCH"]
        assert patch.json == {"feedback": "positive"}
        assert any(r.path.endswith("/retry") for r in gw.emulator.requests), [r.path for r in gw.emulator.requests]


async def test_an_install_is_greeted_once_and_a_retried_activity_answered_once() -> None:
    async with gateway(streaming=False) as (gw, teams):
        install = teams.installed()
        for _ in range(2):
            assert (await teams.send(url(gw), install))[0] == 200
        message = teams.message("only once")
        for _ in range(3):
            assert (await teams.send(url(gw), message))[0] == 200
        await gw.idle()
        assert [c["message"] for c in chats(gw)] == ["Hello", "only once"]
        assert len(teams.conversation(PERSONAL)) == 2


async def test_rate_limits_are_waited_out() -> None:
    async with gateway(streaming=False) as (gw, teams):
        teams.fail_next("send", 429, "too many requests", retry_after=0.2)
        await teams.send(url(gw), teams.message("hello"))
        await gw.idle(20)
        assert teams.texts(PERSONAL) == ['You said: "hello". This is message 1 of this conversation.']


async def test_bad_app_credentials_are_reported_not_retried_forever(caplog: pytest.LogCaptureFixture) -> None:
    async with gateway(streaming=False, app_password="wrong") as (gw, teams):
        await teams.send(url(gw), teams.message("hello"))
        await gw.idle(20)
        assert teams.posted == {}
        assert "Invalid client secret" in caplog.text



async def test_where_teams_refuses_to_stream_the_answer_comes_in_one_message() -> None:
    async with gateway() as (gw, teams):
        teams.streaming_allowed = False
        assert (await teams.send(url(gw), teams.message("hello")))[0] == 200
        await gw.idle()
        assert teams.texts(PERSONAL) == ['You said: "hello". This is message 1 of this conversation.']
        assert teams.streams == {}


async def test_a_stream_that_expired_ends_in_an_ordinary_message() -> None:
    async with gateway() as (gw, teams):
        gw.emulator.faults.token_delay = 0.02
        assert (await teams.send(url(gw), teams.message("long 200")))[0] == 200
        await wait_until(lambda: any(len(s.steps) >= 2 for s in teams.streams.values()), "the stream to start")
        teams.expire_streams()
        await gw.idle()
        [answer] = teams.conversation(PERSONAL)
        assert answer.text.endswith("of the long answer.") and ai_labelled(answer.activity)
        [stream] = teams.streams.values()
        assert not stream.ended and answer.id != stream.id


async def test_a_rate_limited_chunk_waits_and_the_stream_carries_on() -> None:
    async with gateway() as (gw, teams):
        gw.emulator.faults.token_delay = 0.02
        assert (await teams.send(url(gw), teams.message("long 300")))[0] == 200
        await wait_until(lambda: any(len(s.steps) >= 2 for s in teams.streams.values()), "the stream to start")
        teams.fail_next("send", 429, "slow down", retry_after=0.3)
        await gw.idle()
        [stream] = teams.streams.values()
        [limited] = [n for n, call in enumerate(teams.calls) if call[3] == 429]
        later = [body for _, _, body, status in teams.calls[limited + 1:] if status < 300 and body]
        assert later[0]["type"] == "typing", "streaming went on after the wait"
        assert stream.ended and later[-1]["text"].endswith("of the long answer.")
