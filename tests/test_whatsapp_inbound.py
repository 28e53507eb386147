"""WhatsApp Cloud API without a gateway: config, signature, what each documented message type
becomes, statuses, and how the Cloud API's errors are mapped.

The payloads follow the examples of Meta's messages webhook reference (see tests/fakes/whatsapp.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from channels.meta import WhatsAppChannel
from channels.meta.cloud_api import WhatsAppWindowClosed, cloud_error
from channels.meta.events import feedback_payload
from channels.meta.whatsapp_inbound import UNSUPPORTED, retry_payload
from gateway.channel import InboundRequest
from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited, ConfigError, WebhookRejected
from gateway.events import Identity, InboundEvent
from gateway.identity import user_id_for
from switchboard.testing import StubServices
from switchboard.testing.whatsapp import (
    APP_SECRET,
    DISPLAY_NUMBER,
    PHONE_NUMBER_ID,
    PROFILE_NAME,
    VERIFY_TOKEN,
    WA_ID,
    WINDOW_CLOSED_ERROR,
    FakeWhatsApp,
    button_tap,
    message,
    payload,
    signature,
    status,
    text,
)


def config(wa: FakeWhatsApp | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "whatsapp", "phone_number_id": PHONE_NUMBER_ID, "access_token": wa.token if wa else "tok",
            "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN,
            "api_base": wa.api_base if wa else "https://graph.facebook.com", **extra}


@pytest.fixture
async def channel() -> AsyncIterator[WhatsAppChannel]:
    async with FakeWhatsApp() as wa, aiohttp.ClientSession() as http:
        chan = WhatsAppChannel.from_config("wa", config(wa), StubServices(http))  # type: ignore[arg-type]
        assert isinstance(chan, WhatsAppChannel)
        yield chan


def request(body: bytes, sig: str | None) -> InboundRequest:
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["X-Hub-Signature-256"] = sig
    return InboundRequest("POST", "/webhooks/wa", {}, CIMultiDictProxy(CIMultiDict(headers)), body,
                          "http://gw/webhooks/wa")


async def parse(chan: WhatsAppChannel, body: bytes) -> list[InboundEvent]:
    req = request(body, signature(body))
    await chan.verify(req)
    return (await chan.parse(req)).events


async def one(chan: WhatsAppChannel, item: dict[str, Any]) -> InboundEvent:
    [event] = await parse(chan, payload([item]))
    return event


# -- config and signature --------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "complaint"), [
    ({"phone_number_id": None}, "channels.wa.phone_number_id: required key is missing"),
    ({"phone_number_id": "+1 555 0100"}, "channels.wa.phone_number_id: String should match pattern"),
    ({"api_version": "24"}, "channels.wa.api_version: String should match pattern"),
    ({"access_token": ""}, "channels.wa.access_token: String should have at least 1 character"),
    ({"page_access_token": "x"}, "channels.wa.page_access_token: unknown key"),
])
def test_config_mistakes_are_one_readable_line(change: dict[str, Any], complaint: str) -> None:
    raw = {k: v for k, v in {**config(), **change}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        WhatsAppChannel.validate("wa", raw)
    assert str(info.value).startswith(complaint)


@pytest.mark.parametrize("sig", [None, "sha256=" + "0" * 64, "sha1=abc", "", "sha256=\udcff"])
async def test_a_missing_or_wrong_signature_is_401(channel: WhatsAppChannel, sig: str | None) -> None:
    with pytest.raises(WebhookRejected) as info:
        await channel.verify(request(payload([text("hi")]), sig))
    assert info.value.status == 401


async def test_a_signature_with_another_apps_secret_is_401(channel: WhatsAppChannel) -> None:
    body = payload([text("hi")])
    with pytest.raises(WebhookRejected) as info:
        await channel.verify(request(body, signature(body, "another app's secret")))
    assert info.value.status == 401


# -- messages ---------------------------------------------------------------------------------------
async def test_a_text_is_one_event_of_the_person_on_this_number(channel: WhatsAppChannel) -> None:
    event = await one(channel, text("Where is my order?", wamid="wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQ="))
    assert (event.text, event.key, event.kind) == ("Where is my order?", "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQ=",
                                                   "message")
    assert user_id_for(event.identity) == f"wa.{PHONE_NUMBER_ID}.{WA_ID}"
    assert event.reply == {"to": WA_ID, "wamid": event.key}
    assert event.meta == {"profile_name": PROFILE_NAME}


async def test_a_batch_is_answered_oldest_first(channel: WhatsAppChannel) -> None:
    events = await parse(channel, payload([text("second", timestamp=1700000002), text("first", timestamp=1700000001)]))
    assert [e.text for e in events] == ["first", "second"]


@pytest.mark.parametrize(("kind", "content", "line"), [
    ("image", {"caption": "the dent", "mime_type": "image/jpeg", "sha256": "81d3", "id": "2754859441498128"},
     "the dent\n\n[The user sent a photo (image/jpeg): LINK]"),
    ("audio", {"mime_type": "audio/ogg; codecs=opus", "sha256": "a1", "id": "1003383421387256", "voice": True},
     "[The user sent a voice message (audio/ogg; codecs=opus): LINK]"),
    ("audio", {"mime_type": "audio/mpeg", "sha256": "a1", "id": "1003383421387257"},
     "[The user sent an audio file (audio/mpeg): LINK]"),
    ("video", {"mime_type": "video/mp4", "sha256": "b2", "id": "1166846181421424"},
     "[The user sent a video (video/mp4): LINK]"),
    ("document", {"caption": "my invoice", "filename": "invoice-42.pdf", "mime_type": "application/pdf",
                  "sha256": "c3", "id": "1003383421387258"},
     'my invoice\n\n[The user sent a file "invoice-42.pdf" (application/pdf): LINK]'),
    ("sticker", {"mime_type": "image/webp", "sha256": "d4", "id": "1003383421387259", "animated": False},
     "[The user sent a sticker (image/webp): LINK]"),
])
async def test_media_is_described_after_its_caption_with_a_signed_gateway_link(
    channel: WhatsAppChannel, kind: str, content: dict[str, Any], line: str
) -> None:
    event = await one(channel, message(kind, content))
    link = re.search(r"https://gateway\.test/media/wa/(\S+)\?exp=(\d+)&sig=([^\]\s]+)", event.text)
    assert link and event.text == line.replace("LINK", link.group(0))
    # The link names the media id, signed by the gateway; Meta's URL and the token are nowhere.
    assert channel.services.media.check("wa", *link.groups()) == content["id"]
    assert "graph.facebook.com" not in event.text and channel.settings.access_token not in event.text


async def test_location_and_contacts_become_lines(channel: WhatsAppChannel) -> None:
    where = await one(channel, message("location", {"latitude": 37.483307, "longitude": -122.148981,
                                                    "name": "Philz Coffee", "address": "101 Forest Ave, Palo Alto"}))
    assert where.text.startswith("[The user shared a location: 37.483307, -122.148981 (Philz Coffee, 101 Forest")
    card = message("contacts", None, contacts=[{"name": {"formatted_name": "Barbara J. Johnson",
                                                         "first_name": "Barbara"},
                                                "phones": [{"phone": "+1 (940) 555-1234", "type": "HOME",
                                                            "wa_id": "19405551234"}]}])
    assert (await one(channel, card)).text == "[The user shared a contact: Barbara J. Johnson, +1 (940) 555-1234]"


async def test_chosen_buttons_and_list_rows_send_their_titles(channel: WhatsAppChannel) -> None:
    row = message("interactive", {"type": "list_reply", "list_reply": {"id": "priority_express",
                                                                       "title": "Express Shipping",
                                                                       "description": "Next Day to 2 Days"}},
                  context={"from": DISPLAY_NUMBER, "id": "wamid.list"})
    assert (await one(channel, row)).text == "Express Shipping"
    theirs = button_tap("change-button", "Change")
    assert (await one(channel, theirs)).text == "Change"
    template = message("button", {"payload": "STOP_PROMOS", "text": "Stop promotions"})
    assert (await one(channel, template)).text == "Stop promotions"


async def test_our_feedback_and_retry_buttons_are_not_questions(channel: WhatsAppChannel) -> None:
    good = await one(channel, button_tap(feedback_payload("+", "msg-1", "conv-1"), "👍"))
    assert (good.kind, good.text, good.meta) == ("feedback", "", {"feedback": "positive", "message_id": "msg-1",
                                                                  "conversation_id": "conv-1"})
    again = await one(channel, button_tap(retry_payload("msg-1", "conv-1"), "Try again"))
    assert (again.kind, again.meta) == ("retry", {"message_id": "msg-1", "conversation_id": "conv-1"})
    assert again.reply["wamid"] == again.key  # the tap is marked read while the new answer comes


async def test_forwards_quotes_and_ads_say_so(channel: WhatsAppChannel) -> None:
    forwarded = await one(channel, text("look at this", context={"forwarded": True}))
    assert forwarded.text == "look at this\n[The user forwarded this message from another chat]"
    quoted = await one(channel, text("what did you mean?", context={"from": DISPLAY_NUMBER, "id": "wamid.old"}))
    assert quoted.text == "what did you mean?\n[The user is replying to an earlier message in this chat]"
    product = await one(channel, text("in red?", context={"from": DISPLAY_NUMBER, "id": "wamid.p",
                                                          "referred_product": {"catalog_id": "1",
                                                                               "product_retailer_id": "SKU-9"}}))
    assert product.text.endswith("[The user is asking about the product SKU-9]")


async def test_reactions_system_notices_and_unsupported_messages(channel: WhatsAppChannel) -> None:
    ignored = [message("reaction", {"message_id": "wamid.ours", "emoji": "\u2764\ufe0f"}),
               message("system", {"body": "NAME changed their phone number", "type": "user_changed_number"}),
               message("request_welcome")]
    assert await parse(channel, payload(ignored)) == []
    unknown = message("unsupported", None, errors=[{"code": 131051, "title": "Message type unknown"}])
    assert (await one(channel, unknown)).text == UNSUPPORTED


async def test_statuses_and_other_numbers_are_never_turns(channel: WhatsAppChannel) -> None:
    body = payload(statuses=[status("wamid.a", "sent"), status("wamid.a", "delivered"), status("wamid.a", "read")])
    assert await parse(channel, body) == []
    assert await parse(channel, payload([text("hi")], phone_number_id="999000999")) == []
    other_object = b'{"object": "page", "entry": []}'
    assert await parse(channel, other_object) == []


async def test_a_failed_status_is_counted_once_however_often_meta_sends_it(channel: WhatsAppChannel,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    body = payload(statuses=[status("wamid.late", "failed", error=WINDOW_CLOSED_ERROR)])
    for _ in range(3):
        assert await parse(channel, body) == []
    notes = [r.getMessage() for r in caplog.records if "24-hour window" in r.getMessage()]
    assert len(notes) == 1 and "131047" in notes[0] and "more than 24 hours have passed" in notes[0]
    metrics = channel.services.metrics.render().decode()
    assert 'switchboard_delivery_failures_total{channel="wa",reason="WhatsAppWindowClosed"} 1.0' in metrics


async def test_forgetting_the_person_forgets_that_their_window_was_closed(channel: WhatsAppChannel,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    def notes() -> int:
        return sum("24-hour window" in r.getMessage() for r in caplog.records)

    await parse(channel, payload(statuses=[status("wamid.one", "failed", error=WINDOW_CLOSED_ERROR)]))
    await parse(channel, payload(statuses=[status("wamid.two", "failed", error=WINDOW_CLOSED_ERROR)]))
    assert notes() == 1  # the second answer of the hour is counted, not logged again
    await channel.forget(Identity("wa", PHONE_NUMBER_ID, WA_ID))
    await parse(channel, payload(statuses=[status("wamid.three", "failed", error=WINDOW_CLOSED_ERROR)]))
    assert notes() == 2  # nothing about the person was kept


# -- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("status_code", "code", "kind"), [
    (400, 131047, WhatsAppWindowClosed),
    (400, 130429, ChannelRateLimited),
    (400, 131056, ChannelRateLimited),
    (429, 4, ChannelRateLimited),
    (500, 131000, ChannelError),
    (503, 133004, ChannelError),
    (401, 190, ChannelPermanentError),
    (400, 131009, ChannelPermanentError),
])
def test_cloud_api_errors_are_mapped(status_code: int, code: int, kind: type[ChannelError]) -> None:
    error = cloud_error(status_code, {"error": {"message": "m", "code": code, "error_data": {"details": "why"}}})
    assert type(error) is kind and "why" in str(error)
    if isinstance(error, ChannelRateLimited):
        assert error.retry_after > 0
