"""Slack's AI app container through a real gateway: greeting, prompts, status, streaming, title, context."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from channels.slack import SlackChannel
from switchboard.testing import GatewayUnderTest, StubServices, running_gateway
from tests.fakes.slack import SECRET, TEAM, FakeSlack, SlackCall
from tests.fakes.slack_inbound import action_body, assistant_thread, event_body, message, signed_headers

DM, THREAD = "D0A55", "1729999327.187299"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@asynccontextmanager
async def gateway(slack: FakeSlack, **options: Any) -> AsyncIterator[tuple[GatewayUnderTest, aiohttp.ClientSession]]:
    config = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_base,
              "update_interval": 0.02, **options}
    async with running_gateway({"slack": config}) as gw, aiohttp.ClientSession() as http:
        yield gw, http


async def post(gw: GatewayUnderTest, http: aiohttp.ClientSession, body: bytes,
               content_type: str = "application/json") -> int:
    async with http.post(f"{gw.url}/webhooks/slack", data=body,
                         headers=signed_headers(body, content_type=content_type)) as response:
        return response.status


def question(text: str, ts: str, thread_ts: str = THREAD) -> dict[str, Any]:
    """What a person typing in an assistant thread sends: a DM message inside the thread."""
    return message(text, channel=DM, channel_type="im", ts=ts, thread_ts=thread_ts)


def chats(gw: GatewayUnderTest) -> list[str]:
    return [r.json["message"] for r in gw.emulator.requests
            if r.path.endswith("/chat") and isinstance(r.json, dict) and r.json.get("message")]


def assistant_calls(slack: FakeSlack) -> list[SlackCall]:
    """The calls a person sees the effect of, in order."""
    shown = {"assistant.threads.setStatus", "assistant.threads.setTitle", "chat.startStream", "chat.appendStream",
             "chat.stopStream", "chat.postMessage", "chat.update"}
    return [c for c in slack.calls if c.method in shown]


async def test_a_new_thread_is_greeted_with_suggested_prompts(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        assert await post(gw, http, event_body(assistant_thread(), event_id="EvStart")) == 200
        await gw.idle()
    [greeting] = slack.thread(DM, THREAD)
    assert greeting.text.startswith("Hi! I'm here to help.")
    shown = slack.prompts[(DM, THREAD)]
    assert shown["title"] == "Try asking"
    assert [p["title"] for p in shown["prompts"]] == ["What can you do?", "Get started", "Talk to a person"]
    assert chats(gw) == []  # the agent is not asked anything yet


async def test_greeting_and_prompts_come_from_config(slack: FakeSlack) -> None:
    assistant = {"greeting": "Welcome to **Acme** support.", "prompts_title": "Popular",
                 "prompts": [{"title": "Track an order", "message": "Where is my order?"}]}
    async with gateway(slack, assistant=assistant) as (gw, http):
        await post(gw, http, event_body(assistant_thread(), event_id="EvStart"))
        # Slack retries an event it thinks was lost: still one greeting.
        await post(gw, http, event_body(assistant_thread(), event_id="EvStart"))
        await gw.idle()
    assert [m.text for m in slack.thread(DM, THREAD)] == ["Welcome to *Acme* support."]
    assert slack.prompts[(DM, THREAD)] == {
        "title": "Popular", "prompts": [{"title": "Track an order", "message": "Where is my order?"}]
    }


async def test_a_question_gets_a_status_then_a_native_stream_then_a_title(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        gw.emulator.faults.token_delay = 0.002
        await post(gw, http, event_body(assistant_thread(), event_id="EvStart"))
        await gw.idle()
        before = len(slack.calls)
        await post(gw, http, event_body(question("How do refunds work for annual plans?", "1730000000.000100"),
                                        event_id="EvQ1"))
        await gw.idle()
        await post(gw, http, event_body(question("And monthly ones?", "1730000000.000200"), event_id="EvQ2"))
        await gw.idle()
    first = [c for c in assistant_calls(slack) if slack.calls.index(c) >= before]
    methods = [c.method for c in first]
    status = first[0]
    assert status.method == "assistant.threads.setStatus"
    assert status.params["status"] == "is thinking…" and status.params["thread_ts"] == THREAD
    assert status.params["loading_messages"] == ["Thinking…", "Looking into it…", "Putting an answer together…"]
    # The status is cleared as the answer starts streaming; the title follows the finished answer.
    assert methods[1:3] == ["assistant.threads.setStatus", "chat.startStream"]
    assert first[1].params["status"] == ""
    assert "chat.appendStream" in methods and "chat.update" not in methods
    stop, title = methods.index("chat.stopStream"), methods.index("assistant.threads.setTitle")
    assert stop < title
    assert slack.titles[(DM, THREAD)] == "How do refunds work for annual plans?"
    assert len(slack.calls_to("assistant.threads.setTitle")) == 1  # only the first question names the thread
    _greeting, answer, second = slack.thread(DM, THREAD)
    assert answer.text == 'You said: "How do refunds work for annual plans?". This is message 1 of this conversation.'
    assert second.text == 'You said: "And monthly ones?". This is message 2 of this conversation.'
    assert not answer.streaming and answer.blocks  # feedback and retry buttons under it
    assert chats(gw) == ["How do refunds work for annual plans?", "And monthly ones?"]


async def test_each_assistant_thread_is_its_own_conversation(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        for n, thread in enumerate(("1729999327.000001", "1729999327.000002")):
            await post(gw, http, event_body(assistant_thread(thread_ts=thread), event_id=f"EvStart{n}"))
            await post(gw, http, event_body(question("hello", f"1730000001.00000{n}", thread), event_id=f"EvQ{n}"))
        await gw.idle()
    for thread in ("1729999327.000001", "1729999327.000002"):
        assert slack.thread(DM, thread)[-1].text == 'You said: "hello". This is message 1 of this conversation.'


async def test_the_viewed_channel_reaches_the_turn_as_a_preface(slack: FakeSlack) -> None:
    async with gateway(slack, assistant={"context_preface": True}) as (gw, http):
        await post(gw, http, event_body(assistant_thread(viewing="C0FIRST"), event_id="EvStart"))
        changed = assistant_thread("assistant_thread_context_changed", viewing="C0SECOND")
        assert await post(gw, http, event_body(changed, event_id="EvCtx")) == 200
        await post(gw, http, event_body(question("Summarise this channel", "1730000000.000100"), event_id="EvQ"))
        await gw.idle()
    [asked] = chats(gw)
    assert asked.endswith("\n\nSummarise this channel")
    assert "C0SECOND" in asked and "C0FIRST" not in asked
    assert slack.titles[(DM, THREAD)] == "Summarise this channel"  # the title is the question, not the preface


async def test_with_the_preface_commands_are_still_commands(slack: FakeSlack) -> None:
    from gateway.turns import NEW_CONVERSATION_TEXT

    async with gateway(slack, assistant={"context_preface": True}) as (gw, http):
        await post(gw, http, event_body(assistant_thread(viewing="C0FIRST"), event_id="EvStart"))
        await post(gw, http, event_body(question("First question", "1730000000.000100"), event_id="EvQ1"))
        await post(gw, http, event_body(question(" /new", "1730000000.000200"), event_id="EvNew"))
        await post(gw, http, event_body(question("Second question", "1730000000.000300"), event_id="EvQ2"))
        await gw.idle()
    assert [m.split("\n\n")[-1] for m in chats(gw)] == ["First question", "Second question"]
    texts = [m.text for m in slack.thread(DM, THREAD)]
    assert texts[2] == NEW_CONVERSATION_TEXT
    assert texts[3].endswith('Second question". This is message 1 of this conversation.')  # a fresh one


async def test_without_the_preface_the_agent_gets_the_question_alone(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await post(gw, http, event_body(assistant_thread(viewing="C0FIRST"), event_id="EvStart"))
        await post(gw, http, event_body(question("What is new?", "1730000000.000100"), event_id="EvQ"))
        await gw.idle()
    assert chats(gw) == ["What is new?"]


async def test_the_context_is_kept_in_the_turn_either_way(slack: FakeSlack) -> None:
    async with aiohttp.ClientSession() as http:
        raw = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_base}
        chan = SlackChannel.from_config("slack", raw, StubServices(http))  # type: ignore[arg-type]
        async with chan:
            await chan.callback_events(json.loads(event_body(assistant_thread(viewing="C0FIRST"))))
            changed = assistant_thread("assistant_thread_context_changed", viewing="C0SECOND")
            assert await chan.callback_events(json.loads(event_body(changed, event_id="EvCtx"))) == []
            [turn] = await chan.callback_events(json.loads(event_body(question("Hi", "1730000000.1"), event_id="EvQ")))
    assert turn.text == "Hi" and turn.scope == f"{DM}:{THREAD}"
    assert turn.meta["assistant_context"] == {"channel_id": "C0SECOND", "team_id": TEAM}
    assert turn.reply["thread_ts"] == THREAD and turn.reply["assistant"] is True


async def test_a_failure_clears_the_status_and_apologises(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await post(gw, http, event_body(assistant_thread(), event_id="EvStart"))
        await gw.idle()
        gw.emulator.faults.fail_next(401)  # the agent refuses: nothing to retry
        await post(gw, http, event_body(question("Are you there?", "1730000000.000100"), event_id="EvQ"))
        await gw.idle()
    statuses = [(s, loading) for c, t, s, loading in slack.statuses if (c, t) == (DM, THREAD)]
    assert statuses[0][0] == "is thinking…" and statuses[-1] == ("", [])
    assert slack.status_of(DM, THREAD) == ""
    apology = slack.thread(DM, THREAD)[-1]
    assert "sorry" in apology.text.lower()
    assert (DM, THREAD) not in slack.titles


async def test_retry_and_feedback_buttons_work_in_assistant_threads(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await post(gw, http, event_body(assistant_thread(), event_id="EvStart"))
        await post(gw, http, event_body(question("Tell me a fact", "1730000000.000100"), event_id="EvQ"))
        await gw.idle()
        answer = slack.thread(DM, THREAD)[-1]
        statuses = len(slack.statuses)
        assert await post(gw, http, action_body(answer, "switchboard_retry"), FORM) == 200
        await gw.idle()
        assert await post(gw, http, action_body(answer, "switchboard_feedback_positive", action_ts="2.0"), FORM) == 200
        await gw.idle()
    regenerated = slack.thread(DM, THREAD)[-1]
    assert regenerated.ts != answer.ts and regenerated.text == answer.text
    assert len(slack.statuses) > statuses  # the retry showed "is thinking…" too
    assert [r for r in gw.emulator.requests if r.path.endswith("/retry")]
    [feedback] = [r for r in gw.emulator.requests if r.method == "PATCH" and r.path.endswith("/feedback")]
    assert feedback.json == {"feedback": "positive"}


async def test_a_dm_thread_that_is_no_assistant_thread_stays_part_of_the_dm(slack: FakeSlack) -> None:
    async with aiohttp.ClientSession() as http:
        raw = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_base}
        chan = SlackChannel.from_config("slack", raw, StubServices(http))  # type: ignore[arg-type]
        async with chan:
            [turn] = await chan.callback_events(json.loads(event_body(question("Hi", "1730000000.1"))))
    assert turn.scope == DM and "assistant" not in turn.reply and turn.meta == {"trigger": "dm"}


def test_a_long_first_question_makes_a_short_title() -> None:
    from channels.slack.assistant import title_of

    assert title_of("  How do\nrefunds work?  ") == "How do refunds work?"
    long = "Could you please explain, in detail, how the refund process works for annual plans bought in 2024?"
    title = title_of(long)
    assert len(title) <= 61 and title.endswith("…") and long.startswith(title[:-1])
    assert long[len(title) - 1] in " ,"  # cut between words, not inside one


async def test_forgetting_a_person_deletes_their_assistant_threads(slack: FakeSlack) -> None:
    from gateway.events import Identity

    async with aiohttp.ClientSession() as http:
        raw = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_base}
        chan = SlackChannel.from_config("slack", raw, StubServices(http))  # type: ignore[arg-type]
        async with chan:
            await chan.callback_events(json.loads(event_body(assistant_thread(viewing="C0SECRET"))))
            other = assistant_thread(channel="D0OTHER", user="U0002")
            await chan.callback_events(json.loads(event_body(other, event_id="EvOther")))
            await chan.forget(Identity("slack", TEAM, "U0001"))
            [turn] = await chan.callback_events(json.loads(event_body(question("Hi", "1730000000.1"))))
            kept = await chan.assistant.get("U0002", "D0OTHER", THREAD)
    assert turn.scope == DM and "assistant_context" not in turn.meta  # nothing left of their thread
    assert kept is not None and kept.context["channel_id"] == "C0VIEW"


async def test_a_greeting_resumed_after_a_crash_is_not_posted_twice(slack: FakeSlack) -> None:
    from gateway.channel import Answer, Progress
    from gateway.errors import ChannelError

    async with aiohttp.ClientSession() as http:
        raw = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_base}
        chan = SlackChannel.from_config("slack", raw, StubServices(http))  # type: ignore[arg-type]
        async with chan:
            [greeting] = await chan.callback_events(json.loads(event_body(assistant_thread())))
            data: dict[str, Any] = {}
            slack.fail_next("assistant.threads.setSuggestedPrompts", status=500, error="internal_error")
            with pytest.raises(ChannelError):  # the first run fails after posting the greeting
                await chan.open_reply(greeting, Progress(data)).finish(Answer(greeting.text))
            resumed = chan.open_reply(greeting, Progress(json.loads(json.dumps(data))))
            await resumed.finish(Answer(greeting.text))
    assert len(slack.thread(DM, THREAD)) == 1 and len(slack.calls_to("chat.postMessage")) == 1
    assert (DM, THREAD) in slack.prompts
