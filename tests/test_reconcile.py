"""A crash inside the platform call: the resumed turn asks the platform instead of sending blind.

Each test runs a reply whose store "dies" right after a platform call took effect: the save of the
call's result never happens, so the journal keeps only the intent ("about to send part N"). A
second reply, built from what the store did keep, must find the message on the (fake) platform and
adopt it: one message per part, a placeholder edited into the answer, never a duplicate.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from channels.slack import SlackChannel
from gateway.channel import Answer, Progress
from gateway.events import Identity, InboundEvent
from switchboard.testing.services import StubServices
from tests.fakes.slack import SECRET, TEAM, FakeSlack
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, StubGateway, message_params

USER, BOT = "+15551230001", "+15557654321"


class Crash(Exception):
    """The process dies here: nothing after this point is saved."""


class Journal:
    """What a durable store keeps of one entry's progress; ``crash_on`` kills the n-th save."""

    def __init__(self, crash_on: int | None = None) -> None:
        self.kept: dict[str, Any] = {}
        self.saves = 0
        self.crash_on = crash_on

    def progress(self) -> Progress:
        async def save(data: dict[str, Any]) -> None:
            self.saves += 1
            if self.saves == self.crash_on:
                raise Crash
            self.kept = json.loads(json.dumps(data))

        return Progress(json.loads(json.dumps(self.kept)), save)


# -- Twilio: the Messages list ------------------------------------------------------------------
@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def sms(twilio: FakeTwilio) -> AsyncIterator[StubGateway]:
    from channels.twilio import TwilioSmsChannel

    config = {"type": "twilio-sms", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from": BOT,
              "api_base": twilio.url}
    async with StubGateway(TwilioSmsChannel, "sms", config) as gw:
        yield gw


async def sms_event(sms: StubGateway, twilio: FakeTwilio) -> InboundEvent:
    await twilio.post(sms.http, f"{sms.url}/webhooks/sms", message_params("hi", USER, BOT, "SM1"))
    event: InboundEvent = sms.services.accepted[-1]
    return event


LONG = Answer("\n\n".join(f"Paragraph {i}. " + "word " * 300 for i in range(3)))


async def test_a_part_twilio_accepted_before_the_crash_is_adopted_not_resent(
    sms: StubGateway, twilio: FakeTwilio
) -> None:
    event = await sms_event(sms, twilio)
    journal = Journal(crash_on=4)  # saves: intent 1, sent 1, intent 2, (crash) sent 2
    with pytest.raises(Crash):
        await sms.channel.open_reply(event, journal.progress()).finish(LONG)
    assert [b[:5] for b in twilio.bodies()] == ["(1/3)", "(2/3)"]
    assert journal.kept["parts_sent"] == 1 and journal.kept["sending"]["part"] == 1

    journal.crash_on = None
    resumed = journal.progress()
    await sms.channel.open_reply(event, resumed).finish(LONG)
    assert [b[:5] for b in twilio.bodies()] == ["(1/3)", "(2/3)", "(3/3)"]  # part 2 once
    assert journal.kept["parts_sent"] == 2  # adopted and saved before part 3's intent
    # The last part's id is left to the finish (Progress.settled), so it is only in memory here.
    assert resumed.data["parts_sent"] == 3 and "sending" not in resumed.data
    assert resumed.data["sent_ids"] == {str(i): r["sid"] for i, r in enumerate(twilio.resources)}


async def test_a_part_that_never_reached_twilio_is_sent_on_resume(
    sms: StubGateway, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = await sms_event(sms, twilio)
    journal = Journal()

    async def dies(*_: object) -> None:
        raise Crash

    with monkeypatch.context() as patch:  # the intent is saved, then the process dies before the request
        patch.setattr(sms.channel, "send_text", dies)
        with pytest.raises(Crash):
            await sms.channel.open_reply(event, journal.progress()).finish(Answer("Just one part."))
    assert journal.kept["sending"]["part"] == 0 and twilio.bodies() == []
    await sms.channel.open_reply(event, journal.progress()).finish(Answer("Just one part."))
    assert twilio.bodies() == ["Just one part."]


async def test_an_older_message_with_the_same_text_is_not_mistaken_for_ours(
    sms: StubGateway, twilio: FakeTwilio
) -> None:
    event = await sms_event(sms, twilio)
    await sms.channel.send_text(event, "Yes.")  # an earlier answer, identical words
    journal = Journal()
    journal.kept = {"sending": {"part": 0, "at": time.time() + 2}}  # our attempt started later
    await sms.channel.open_reply(event, journal.progress()).finish(Answer("Yes."))
    assert twilio.bodies() == ["Yes.", "Yes."]


async def test_the_fake_messages_list_filters_and_pages_as_twilio_documents(
    sms: StubGateway, twilio: FakeTwilio
) -> None:
    for i in range(5):
        await sms.channel.send_text(await sms_event(sms, twilio), f"answer {i}")
    base = f"{twilio.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    auth = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    async with sms.http.get(base, params={"To": USER, "From": BOT, "DateSent>": today, "PageSize": "2"},
                            headers=auth) as r:
        first = await r.json()
    assert [m["body"] for m in first["messages"]] == ["answer 4", "answer 3"]  # newest first
    async with sms.http.get(twilio.url + first["next_page_uri"], headers=auth) as r:
        second = await r.json()
    assert [m["body"] for m in second["messages"]] == ["answer 2", "answer 1"]
    for query in ({"To": BOT}, {"DateSent<": "2001-01-01"}, {"DateSent": "2001-01-01"}):
        async with sms.http.get(base, params=query, headers=auth) as r:
            assert (await r.json())["messages"] == []
    async with sms.http.get(base, params={"To": USER}) as r:
        assert r.status == 401


# -- Slack: message metadata ----------------------------------------------------------------------
@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def channel(slack: FakeSlack) -> AsyncIterator[SlackChannel]:
    async with aiohttp.ClientSession() as http:
        raw = {"type": "slack", "bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_base,
               "update_interval": 0}
        chan = SlackChannel.from_config("slack", raw, StubServices(http))  # type: ignore[arg-type]
        assert isinstance(chan, SlackChannel)
        await chan.initialize()
        yield chan
        await chan.shutdown()


THREAD = InboundEvent(
    channel="slack", key="Ev1", identity=Identity("slack", TEAM, "U0001"), scope="C0001:100.1",
    text="hi", reply={"channel": "C0001", "thread_ts": "100.1", "ts": "100.1"},
)
DM = InboundEvent(
    channel="slack", key="Ev2", identity=Identity("slack", TEAM, "U0001"), scope="D0001",
    text="hi", reply={"channel": "D0001", "ts": "100.2"},
)


@pytest.mark.parametrize("event", [THREAD, DM], ids=["thread", "dm"])
async def test_a_placeholder_posted_before_the_crash_is_edited_into_the_answer(
    channel: SlackChannel, slack: FakeSlack, event: InboundEvent
) -> None:
    thread = event.reply.get("thread_ts")
    journal = Journal(crash_on=2)  # the intent is saved, the placeholder posted, its ts never saved
    with pytest.raises(Crash):
        await channel.open_reply(event, journal.progress()).start()
    [placeholder] = slack.thread(event.reply["channel"], thread)
    assert "thinking" in placeholder.text and journal.kept["slack"]["ts"] == []

    journal.crash_on = None
    await channel.open_reply(event, journal.progress()).finish(Answer("The answer."))
    [answer] = slack.thread(event.reply["channel"], thread)
    assert answer.ts == placeholder.ts and answer.text == "The answer."
    assert journal.kept["slack"]["ts"] == [placeholder.ts] and "sending" not in journal.kept
    lookups = slack.calls_to("conversations.replies" if thread else "conversations.history")
    assert len(lookups) == 1 and lookups[0].params["include_all_metadata"] in (True, "true", "1")


async def test_a_placeholder_that_never_reached_slack_is_posted_once_on_resume(
    channel: SlackChannel, slack: FakeSlack
) -> None:
    journal = Journal()
    slack.fail_next("chat.postMessage", status=500, error="internal_error")  # the post never landed
    with pytest.raises(Exception, match="internal_error"):
        await channel.open_reply(THREAD, journal.progress()).start()
    assert slack.thread("C0001", "100.1") == [] and journal.kept["sending"]["part"] == 0
    await channel.open_reply(THREAD, journal.progress()).finish(Answer("The answer."))
    assert [m.text for m in slack.thread("C0001", "100.1")] == ["The answer."]


async def test_another_answers_message_in_the_same_thread_is_not_adopted(
    channel: SlackChannel, slack: FakeSlack
) -> None:
    other = InboundEvent(channel="slack", key="Ev9", identity=THREAD.identity, scope=THREAD.scope, text="x",
                         reply=THREAD.reply)
    await channel.open_reply(other, Progress()).finish(Answer("An earlier answer."))
    journal = Journal()
    journal.kept = {"slack": {"ts": []}, "sending": {"part": 0, "at": time.time() - 5}}
    await channel.open_reply(THREAD, journal.progress()).finish(Answer("This answer."))
    assert [m.text for m in slack.thread("C0001", "100.1")] == ["An earlier answer.", "This answer."]


async def test_the_fake_lists_metadata_only_when_asked(channel: SlackChannel, slack: FakeSlack) -> None:
    await channel.open_reply(DM, Progress()).finish(Answer("Hello."))
    plain = await channel.api.call("conversations.history", channel="D0001")
    full = await channel.api.call("conversations.history", channel="D0001", include_all_metadata=True)
    assert "metadata" not in plain["messages"][0]
    assert full["messages"][0]["metadata"] == {"event_type": "switchboard_answer",
                                               "event_payload": {"key": DM.journal_key, "part": 0}}
    later = await channel.api.call("conversations.history", channel="D0001", oldest=f"{time.time() + 60:.6f}")
    assert later["messages"] == []


async def test_without_the_history_scope_the_answer_is_posted_anew_not_lost(
    channel: SlackChannel, slack: FakeSlack
) -> None:
    journal = Journal()
    journal.kept = {"slack": {"ts": []}, "sending": {"part": 0, "at": time.time()}}
    slack.fail_next("conversations.replies", status=200, error="missing_scope")
    await channel.open_reply(THREAD, journal.progress()).finish(Answer("The answer."))
    assert [m.text for m in slack.thread("C0001", "100.1")] == ["The answer."]
