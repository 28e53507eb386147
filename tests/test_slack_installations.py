"""slack_sdk's installation and OAuth-state stores over Switchboard's store (the memory one here;
the OAuth tests run them on SQLite and Redis too)."""

from __future__ import annotations

from slack_sdk.oauth.installation_store import Installation

from adapters.stores.memory import MemoryStore
from channels.slack.installations import StoreInstallationStore, StoreOAuthStateStore


def installation(team: str | None, *, enterprise: str | None = None, org: bool = False, user: str = "U1",
                 token: str = "xoxb-1", expires_in: int | None = None) -> Installation:
    return Installation(app_id="A1", enterprise_id=enterprise, team_id=team, bot_token=token, bot_id="B1",
                        bot_user_id="UB1", bot_refresh_token="r" if expires_in else None,
                        bot_token_expires_in=expires_in, user_id=user, is_enterprise_install=org)


async def test_an_installation_round_trips_with_its_expiry() -> None:
    store = StoreInstallationStore(MemoryStore(), "slack")
    saved = installation("T1", expires_in=3600)
    await store.async_save(saved)
    found = await store.async_find_installation(enterprise_id=None, team_id="T1")
    assert found is not None
    assert (found.bot_token, found.bot_user_id, found.bot_token_expires_at) == (
        "xoxb-1", "UB1", saved.bot_token_expires_at)
    bot = await store.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None and bot.bot_token == "xoxb-1"
    assert await store.async_find_installation(enterprise_id=None, team_id="T2") is None


async def test_an_org_wide_install_answers_for_every_workspace_of_the_org() -> None:
    store = StoreInstallationStore(MemoryStore(), "slack")
    await store.async_save(installation(None, enterprise="E1", org=True, token="xoxb-org"))
    found = await store.async_find_bot(enterprise_id="E1", team_id="T9")
    assert found is not None and found.bot_token == "xoxb-org"
    await store.async_delete_all(enterprise_id="E1", team_id=None)
    assert await store.async_find_bot(enterprise_id="E1", team_id="T9") is None


async def test_deleting_a_workspace_leaves_the_others_and_user_revocation_keeps_the_bot() -> None:
    store = StoreInstallationStore(MemoryStore(), "slack")
    await store.async_save(installation("T1", token="xoxb-a"))
    await store.async_save(installation("T10", token="xoxb-b"))  # a team id that starts like the other
    await store.async_delete_installation(enterprise_id=None, team_id="T1", user_id="U1")
    assert await store.async_find_installation(enterprise_id=None, team_id="T1", user_id="U1") is None
    assert await store.async_find_bot(enterprise_id=None, team_id="T1") is not None
    await store.async_delete_all(enterprise_id=None, team_id="T1")
    assert await store.async_find_bot(enterprise_id=None, team_id="T1") is None
    assert await store.async_find_bot(enterprise_id=None, team_id="T10") is not None


async def test_a_state_is_good_once() -> None:
    states = StoreOAuthStateStore(MemoryStore(), "slack")
    state = await states.async_issue()
    assert await states.async_consume("not-issued") is False
    assert await states.async_consume(state) is True
    assert await states.async_consume(state) is False

