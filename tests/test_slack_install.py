"""One Slack app installed into many workspaces: OAuth through slack-bolt, tokens in the store."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from channels.slack import SlackChannel
from gateway.errors import ConfigError
from switchboard.testing import GatewayUnderTest, running_gateway
from tests.conftest_stores import REDIS_TEST_URL, flush_test_redis
from tests.fakes.slack import CLIENT_ID, CLIENT_SECRET, SECRET, FakeSlack
from tests.fakes.slack_inbound import event_body, mention, signed_headers

ACME, GLOBEX = "T0ACME", "T0GLOBEX"
BOTS = {ACME: "UBOTACME", GLOBEX: "UBOTGLOBEX"}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@asynccontextmanager
async def gateway(slack: FakeSlack, store: str = "memory://", **options: Any
                  ) -> AsyncIterator[tuple[GatewayUnderTest, aiohttp.ClientSession]]:
    config = {"type": "slack", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "signing_secret": SECRET,
              "api_base": slack.api_base, "update_interval": 0.02, **options}
    async with running_gateway({"slack": config}, store=store) as gw, aiohttp.ClientSession() as http:
        yield gw, http


def channel(gw: GatewayUnderTest) -> SlackChannel:
    chan = gw.channel("slack")
    assert isinstance(chan, SlackChannel)
    return chan


async def start_install(gw: GatewayUnderTest, http: aiohttp.ClientSession) -> tuple[str, str]:
    """Open the "Add to Slack" page: the state in its Slack link, and the cookie it set."""
    async with http.get(f"{gw.url}/webhooks/slack/install") as page:
        assert page.status == 200
        html = await page.text()
        cookie = page.headers["Set-Cookie"].split(";")[0]
    [link] = re.findall(r'href="(https://slack\.com/oauth/v2/authorize\?[^"]+)"', html)
    assert f"client_id={CLIENT_ID}" in link and "redirect_uri=" in link and "chat:write" in link
    [state] = re.findall(r"state=([\w-]+)", link)
    return state, cookie


async def redirect(gw: GatewayUnderTest, http: aiohttp.ClientSession, code: str, state: str, cookie: str) -> int:
    """The browser coming back from Slack's consent screen."""
    async with http.get(f"{gw.url}/webhooks/slack/oauth_redirect", params={"code": code, "state": state},
                        headers={"Cookie": cookie}) as response:
        return response.status


async def install(gw: GatewayUnderTest, http: aiohttp.ClientSession, slack: FakeSlack, team: str,
                  **approval: Any) -> None:
    state, cookie = await start_install(gw, http)
    assert await redirect(gw, http, slack.approve(team, bot_user=BOTS[team], **approval), state, cookie) == 200


async def installed_token(gw: GatewayUnderTest, team: str) -> str | None:
    installations = channel(gw).installations
    assert installations is not None
    found = await installations.async_find_bot(enterprise_id=None, team_id=team)
    return found.bot_token if found else None


async def post_event(gw: GatewayUnderTest, http: aiohttp.ClientSession, event: dict[str, Any], team: str,
                     event_id: str) -> int:
    body = event_body(event, team=team, event_id=event_id, bot_user=BOTS[team])
    async with http.post(f"{gw.url}/webhooks/slack", data=body, headers=signed_headers(body)) as response:
        return response.status


def ask(text: str, ts: str, team: str) -> dict[str, Any]:
    event = mention(text, ts=ts)
    event["text"] = f"<@{BOTS[team]}> {text}"
    return event


def answers(slack: FakeSlack, ts: str) -> list[str]:
    return [m.text for m in slack.thread("C0001", ts)]


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
async def test_an_install_with_a_valid_state_stores_the_installation(slack: FakeSlack, store: str,
                                                                     tmp_path: Any) -> None:
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/state.db", "redis": REDIS_TEST_URL}[store]
    if store == "redis":
        flush_test_redis()
    async with gateway(slack, store=url) as (gw, http):
        state, cookie = await start_install(gw, http)
        code = slack.approve(ACME, bot_user=BOTS[ACME])
        async with http.get(f"{gw.url}/webhooks/slack/oauth_redirect", params={"code": code, "state": state},
                            headers={"Cookie": cookie}) as page:
            assert page.status == 200
            assert "Thank you" in await page.text()
        token = await installed_token(gw, ACME)
        # The same state cannot install twice.
        assert await redirect(gw, http, slack.approve(ACME, bot_user=BOTS[ACME]), state, cookie) >= 400
    assert token in slack.tokens_of(ACME)
    [exchange] = slack.calls_to("oauth.v2.access")
    assert exchange.params["code"] == code
    assert (exchange.params["client_id"], exchange.params["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)


async def test_an_invalid_state_is_refused(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await start_install(gw, http)  # a real state exists, but the attacker does not have it
        forged = "forged-state"
        status = await redirect(gw, http, slack.approve(ACME), forged, f"slack-app-oauth-state={forged}")
        assert status == 401
        state, _ = await start_install(gw, http)
        assert await redirect(gw, http, slack.approve(ACME), state, "slack-app-oauth-state=other") == 400
        assert await installed_token(gw, ACME) is None
    assert slack.calls_to("oauth.v2.access") == []


async def test_two_workspaces_each_get_answers_with_their_own_token(slack: FakeSlack) -> None:
    async with gateway(slack) as (gw, http):
        await install(gw, http, slack, ACME)
        await install(gw, http, slack, GLOBEX)
        assert await post_event(gw, http, ask("hello from acme", "100.1", ACME), ACME, "EvA") == 200
        assert await post_event(gw, http, ask("hello from globex", "200.1", GLOBEX), GLOBEX, "EvG") == 200
        await gw.idle()
        tokens = {team: await installed_token(gw, team) for team in (ACME, GLOBEX)}
    assert answers(slack, "100.1") == ['You said: "hello from acme". This is message 1 of this conversation.']
    assert answers(slack, "200.1") == ['You said: "hello from globex". This is message 1 of this conversation.']
    used = {c.params["thread_ts"]: c.token for c in slack.calls_to("chat.postMessage")}
    assert used == {"100.1": tokens[ACME], "200.1": tokens[GLOBEX]} and tokens[ACME] != tokens[GLOBEX]
    users = {r.json.get("userId") for r in gw.emulator.requests if isinstance(r.json, dict) and r.json.get("message")}
    assert users == {f"slack.{ACME}.U0001", f"slack.{GLOBEX}.U0001"}  # separate people per workspace


@pytest.mark.parametrize("removal", [
    {"type": "app_uninstalled"},
    {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [BOTS[ACME]]}},
])
async def test_an_uninstall_removes_the_tokens_and_later_events_go_unanswered(
    slack: FakeSlack, removal: dict[str, Any]
) -> None:
    async with gateway(slack) as (gw, http):
        await install(gw, http, slack, ACME)
        await install(gw, http, slack, GLOBEX)
        slack.uninstall(ACME)
        assert await post_event(gw, http, removal, ACME, "EvGone") == 200
        assert await installed_token(gw, ACME) is None
        assert await installed_token(gw, GLOBEX) is not None  # the other workspace is untouched
        assert await post_event(gw, http, ask("still there?", "300.1", ACME), ACME, "EvLate") == 200
        assert await post_event(gw, http, ask("and here?", "400.1", GLOBEX), GLOBEX, "EvOther") == 200
        await gw.idle()
    assert answers(slack, "300.1") == []
    assert answers(slack, "400.1") == ['You said: "and here?". This is message 1 of this conversation.']
    asked = [r.json["message"] for r in gw.emulator.requests if isinstance(r.json, dict) and r.json.get("message")]
    assert asked == ["and here?"]


async def test_a_rotating_token_is_refreshed_before_it_expires(slack: FakeSlack) -> None:
    async with gateway(slack, token_refresh_minutes=120) as (gw, http):
        # Installed with rotation on; the token expires in an hour, inside the two-hour refresh window.
        await install(gw, http, slack, ACME, rotation=True, expires_in=3600)
        first = await installed_token(gw, ACME)
        assert first is not None and slack.bots[first].expires_at is not None
        await post_event(gw, http, ask("one", "500.1", ACME), ACME, "Ev1")
        await gw.idle()
        refreshed = await installed_token(gw, ACME)
        await post_event(gw, http, ask("two", "600.1", ACME), ACME, "Ev2")
        await gw.idle()
        assert await installed_token(gw, ACME) == refreshed  # twelve hours left: no second refresh
    assert refreshed is not None and refreshed != first
    assert slack.bots[first].expires_at > time.time()  # type: ignore[operator]  # refreshed before expiry
    refresh = [c for c in slack.calls_to("oauth.v2.access") if c.params.get("grant_type") == "refresh_token"]
    assert len(refresh) == 1
    posts = slack.calls_to("chat.postMessage")
    assert {c.token for c in posts} == {refreshed}
    assert refresh[0].at < posts[0].at
    assert answers(slack, "500.1") == ['You said: "one". This is message 1 of this conversation.']


async def test_check_lists_the_install_urls() -> None:
    raw = {"type": "slack", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "signing_secret": "s"}
    chan = SlackChannel("team", SlackChannel.validate("team", raw), None)  # type: ignore[arg-type]
    assert chan.webhook_urls("https://bot.example.com") == [
        ("Event Subscriptions request URL", "https://bot.example.com/webhooks/team"),
        ("Interactivity request URL", "https://bot.example.com/webhooks/team"),
        ("OAuth redirect URL", "https://bot.example.com/webhooks/team/oauth_redirect"),
        ("Install page (Add to Slack)", "https://bot.example.com/webhooks/team/install"),
    ]
    assert CLIENT_SECRET not in chan.describe()
    assert chan.support_desk() is None  # many workspaces: no one workspace for the team's threads


@pytest.mark.parametrize(("raw", "says"), [
    ({"bot_token": "xoxb-1", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, "not both"),
    ({"client_id": CLIENT_ID}, "client_id and client_secret"),
    ({}, "bot_token is required"),
    ({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "mode": "socket", "app_token": "xapp-1"},
     'needs mode = "events"'),
])
def test_install_settings_mistakes_are_one_readable_line(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SlackChannel.validate("team", {"type": "slack", "signing_secret": "s", **raw})
    assert says in str(caught.value) and "\n" not in str(caught.value)


async def test_assistant_threads_and_buttons_in_an_installed_workspace_use_its_token(slack: FakeSlack) -> None:
    from tests.fakes.slack_inbound import action_body, assistant_thread, message

    async with gateway(slack) as (gw, http):
        await install(gw, http, slack, ACME)
        await install(gw, http, slack, GLOBEX)
        token = await installed_token(gw, GLOBEX)
        assert await post_event(gw, http, assistant_thread(channel="D0G", team=GLOBEX), GLOBEX, "EvStart") == 200
        asked = message("Hi there", channel="D0G", ts="1730000000.1", thread_ts="1729999327.187299")
        assert await post_event(gw, http, asked, GLOBEX, "EvQ") == 200
        await gw.idle()
        answer = slack.thread("D0G", "1729999327.187299")[-1]
        body = action_body(answer, "switchboard_feedback_positive", team=GLOBEX)
        async with http.post(f"{gw.url}/webhooks/slack", data=body,
                             headers=signed_headers(body, content_type="application/x-www-form-urlencoded")) as r:
            assert r.status == 200
        await gw.idle()
    assert answer.text == 'You said: "Hi there". This is message 1 of this conversation.'
    assert ("D0G", "1729999327.187299") in slack.prompts and ("D0G", "1729999327.187299") in slack.titles
    assert {c.token for c in slack.calls if c.method.startswith(("chat.", "assistant."))} == {token}
    assert any("👍" in str(b) for b in slack.thread("D0G", "1729999327.187299")[-1].blocks)


async def test_answers_running_at_once_refresh_the_token_once(slack: FakeSlack) -> None:
    import asyncio

    async with gateway(slack) as (gw, http):
        await install(gw, http, slack, ACME, rotation=True, expires_in=600)
        gw.emulator.faults.token_delay = 0.002
        statuses = await asyncio.gather(*(
            post_event(gw, http, ask(f"question {n}", f"70{n}.1", ACME), ACME, f"EvRace{n}") for n in range(4)
        ))
        assert statuses == [200] * 4
        await gw.idle()
        token = await installed_token(gw, ACME)
    refreshes = [c for c in slack.calls_to("oauth.v2.access") if c.params.get("grant_type") == "refresh_token"]
    assert len(refreshes) == 1
    assert {c.token for c in slack.calls if c.method.startswith("chat.")} == {token}
    assert all(answers(slack, f"70{n}.1") for n in range(4))


async def test_files_in_an_installed_workspace_are_fetched_with_its_token(slack: FakeSlack) -> None:
    import re as _re

    from tests.fakes.slack_inbound import message

    async with gateway(slack) as (gw, http):
        await install(gw, http, slack, ACME)
        await install(gw, http, slack, GLOBEX)
        pdf = {"id": "F0PDF", "name": "invoice.pdf", "mimetype": "application/pdf", "size": 48213,
               "mode": "hosted", "url_private": "https://files.slack.com/files-pri/x/invoice.pdf"}
        assert await post_event(gw, http, message("", files=[pdf], upload=True), GLOBEX, "EvFile") == 200
        await gw.idle()
        [said] = [r.json["message"] for r in gw.emulator.requests if isinstance(r.json, dict) and r.json.get("message")]
        [link] = _re.findall(r"https?://\S+?(?=\])", said)
        async with http.get(link) as resp:
            assert (resp.status, await resp.read()) == (200, b"slack file F0PDF")
        token = await installed_token(gw, GLOBEX)
    [info] = slack.calls_to("files.info")
    assert info.token == token
