"""Human handoff with Teams as the support desk: a thread per conversation in a Teams channel."""

from __future__ import annotations

from gateway.handoff import RESOLVED_TEXT, STARTED_TEXT
from switchboard.testing import running_gateway
from switchboard.testing.teams import PERSONAL, FakeTeams
from tests.fakes.telegram import SECRET, FakeTelegram, post_update, text_update

SUPPORT = "19:support@thread.tacv2"


async def test_a_teams_channel_takes_over_a_teams_chat_and_hands_back() -> None:
    async with FakeTeams() as teams:
        config = teams.channel_config(edit_interval=0.05, streaming=False)
        sections = {"handoff": {"desk": "teams", "support_channel_id": SUPPORT}}
        async with running_gateway({"teams": config}, sections) as gw:
            hook = f"{gw.url}/webhooks/teams"

            async def user(text: str) -> None:
                assert (await teams.send(hook, teams.message(text)))[0] == 200
                await gw.idle()

            async def staff(text: str, thread: str, *, mention: bool = False) -> None:
                activity = teams.message(text, conversation=thread, kind="channel", user="29:alex", aad="aad-alex",
                                         name="Alex Staff", mention=mention)
                assert (await teams.send(hook, activity))[0] == 200
                await gw.idle()

            await user("my laptop will not boot")
            await user("/human")
            assert teams.texts(PERSONAL)[-1] == STARTED_TEXT
            [create] = teams.sent("create")
            assert create["channelData"]["channel"]["id"] == SUPPORT
            header = next(p for p in teams.posted.values() if p.conversation.startswith(SUPPORT))
            thread = header.conversation
            assert "needs a person" in header.text and "They asked for a person." in header.text
            transcript = teams.texts(thread)[1]
            assert "**User:** my laptop will not boot" in transcript and "**Agent:** You said:" in transcript
            agent_calls = len([r for r in gw.emulator.requests if r.path.endswith("/chat")])

            # Both ways: the user's words go to the thread (escaped), staff words go to the user.
            await user("still *broken* [see](https://evil.example) 1 < 2")
            expected = "**aad-ann on teams:** still \\*broken\\* \\[see\\](https://evil.example) 1 &lt; 2"
            assert teams.texts(thread)[-1] == expected
            await staff("Hi, Alex here. Hold the power button for ten seconds.", thread)
            assert teams.texts(PERSONAL)[-1] == "Hi, Alex here. Hold the power button for ten seconds."
            staff_reply = teams.conversation(PERSONAL)[-1].activity
            assert not staff_reply.get("entities"), "a person's words are not labelled AI-generated"
            assert len([r for r in gw.emulator.requests if r.path.endswith("/chat")]) == agent_calls

            await staff("!resolve", thread, mention=True)
            assert teams.texts(PERSONAL)[-1] == RESOLVED_TEXT
            assert "Resolved by Alex Staff" in teams.texts(thread)[-1]
            await user("thanks, it works")
            assert teams.texts(PERSONAL)[-1].startswith('You said: "thanks, it works"')


async def test_a_teams_desk_serves_people_on_another_channel() -> None:
    async with FakeTeams() as teams, FakeTelegram() as tg:
        channels = {
            "teams": teams.channel_config(),
            "tg": {"type": "telegram", "bot_token": tg.token, "secret_token": SECRET, "api_base": tg.api_base,
                   "edit_interval": 0.05},
        }
        async with running_gateway(channels, {"handoff": {"desk": "teams", "support_channel_id": SUPPORT}}) as gw:
            assert (await post_update(f"{gw.url}/webhooks/tg", text_update("/human", chat_id=77, user_id=77))
                    ).status == 200
            await gw.idle()
            header = next(p for p in teams.posted.values() if p.conversation.startswith(SUPPORT))
            assert "77 on tg" in header.text
            staff = teams.message("Hello from the IT desk", conversation=header.conversation, kind="channel",
                                  user="29:alex", name="Alex")
            assert (await teams.send(f"{gw.url}/webhooks/teams", staff))[0] == 200
            await gw.idle()
            assert [m.text for m in tg.chat(77)][-1] == "Hello from the IT desk"
