"""WhatsApp Cloud API on the gateway's other paths: human handoff through Slack, and /link with the
same person's Twilio WhatsApp identity."""

from __future__ import annotations

import re

import aiohttp

from gateway.commands import LINK_TEXTS
from gateway.handoff import RESOLVED_TEXT, STARTED_TEXT
from gateway.linking import LinkResult
from switchboard.testing import GatewayUnderTest, running_gateway
from switchboard.testing.whatsapp import WA_ID, FakeWhatsApp, payload, post_signed, text
from tests.fakes import slack as fs
from tests.fakes import slack_inbound
from tests.fakes.slack import FakeSlack
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, message_params
from tests.test_whatsapp_gateway import wa_config

SUPPORT, STAFF = "CSUPPORT1", "USTAFF01"
CODE = re.compile(r"\b([A-Z2-9]{4}-[A-Z2-9]{4})\b")


async def whatsapp(gw: GatewayUnderTest, wa: FakeWhatsApp, said: str) -> str:
    status, _ = await post_signed(f"{gw.url}/webhooks/wa", payload([text(said)]))
    assert status == 200
    await gw.idle()
    return wa.texts_to(WA_ID)[-1]


async def test_a_handoff_relays_staff_replies_to_the_whatsapp_user() -> None:
    async with FakeSlack() as slack, FakeWhatsApp() as wa:
        channels = {"desk": {"type": "slack", "bot_token": slack.token, "signing_secret": fs.SECRET,
                             "api_base": slack.api_base},
                    "wa": wa_config(wa)}
        async with running_gateway(channels, {"handoff": {"slack_channel": "desk",
                                                             "support_channel_id": SUPPORT}}) as gw:
            await whatsapp(gw, wa, "hi")
            assert await whatsapp(gw, wa, "/human") == STARTED_TEXT
            [top] = slack.thread(SUPPORT, None)
            assert f"{WA_ID} on wa" in top.text
            await whatsapp(gw, wa, "is anyone there?")
            assert slack.thread(SUPPORT, top.ts)[-1].text.endswith("is anyone there?")

            async def staff(said: str, n: int) -> None:
                event = slack_inbound.message(said, channel=SUPPORT, channel_type="channel", user=STAFF,
                                   ts=f"1800000000.00000{n}", thread_ts=top.ts)
                body = slack_inbound.event_body(event, event_id=f"EvStaff{n}")
                async with aiohttp.ClientSession() as http, http.post(
                    f"{gw.url}/webhooks/desk", data=body, headers=slack_inbound.signed_headers(body)
                ) as resp:
                    assert resp.status == 200
                await gw.idle()

            await staff("Hello from the team, Alex here", 1)
            [relayed] = [m for m in wa.messages_to(WA_ID) if "Alex" in str(m)]
            assert relayed["type"] == "text" and relayed["text"]["body"] == "Hello from the team, Alex here"
            await staff("!resolve", 2)
            assert wa.texts_to(WA_ID)[-1] == RESOLVED_TEXT


async def test_the_same_number_on_twilio_whatsapp_links_with_link() -> None:
    async with FakeWhatsApp() as wa, FakeTwilio() as twilio:
        bot, person = "+15557654321", f"+{WA_ID}"
        channels = {"wa": wa_config(wa),
                    "twa": {"type": "twilio-whatsapp", "from": f"whatsapp:{bot}", "api_base": twilio.url,
                            "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}}
        async with running_gateway(channels) as gw, aiohttp.ClientSession() as http:

            async def over_twilio(said: str, sid: str) -> str:
                status, _, _ = await twilio.post(http, f"{gw.url}/webhooks/twa",
                                                 message_params(said, f"whatsapp:{person}", f"whatsapp:{bot}", sid))
                assert status == 200
                await gw.idle()
                return twilio.bodies(f"whatsapp:{person}")[-1]

            await whatsapp(gw, wa, "hello over the Cloud API")
            cloud_user = next(r.json["userId"] for r in gw.emulator.requests if r.json and "userId" in r.json)
            assert cloud_user == f"wa.{wa_config(wa)['phone_number_id']}.{WA_ID}"
            issued = await whatsapp(gw, wa, "/link")
            code = CODE.search(issued)
            assert code
            assert await over_twilio(code.group(1), "SM1") == LINK_TEXTS[LinkResult.LINKED]
            await over_twilio("now through Twilio", "SM2")
            fresh = [r.json for r in gw.emulator.requests
                     if r.path.endswith("/chat") and r.json and "conversationId" not in r.json]
            assert fresh[-1] == {**fresh[-1], "message": "now through Twilio", "userId": cloud_user}
