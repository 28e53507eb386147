"""Every inbound surface of the gateway: its path, a valid request, and how a platform signs one.

A :class:`Surface` knows how to sign *any* body the way its platform does (with the platform's
own SDK where there is one), so the fuzzers can send hostile bodies either unsigned (the
gateway must refuse them before doing anything) or correctly signed (the gateway must still
never fail with a 500 or a traceback).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from multidict import MultiDict

from switchboard.testing.teams import BOT as TEAMS_BOT
from switchboard.testing.teams import PERSONAL, TENANT, issue_token
from switchboard.testing.whatsapp import payload as wa_payload
from switchboard.testing.whatsapp import text as wa_text
from tests.fakes.meta import APP_SECRET, PSID, payload, text_item
from tests.fakes.meta import signature as meta_signature
from tests.fakes.slack import SECRET as SLACK_SECRET
from tests.fakes.slack_inbound import event_body, message, signed_headers
from tests.fakes.telegram import SECRET as TELEGRAM_SECRET
from tests.fakes.telegram import callback_update, text_update
from tests.fakes.twilio import AUTH_TOKEN, call_params, message_params
from tests.fuzz.live import SMS_FROM, TEAMS_SERVICE_URL, WA_FROM

Headers = list[tuple[bytes, bytes]]
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Surface:
    """One inbound endpoint: ``sign(port, target, body)`` returns the headers its platform adds."""

    name: str
    path: str
    content_type: str
    #: the valid body number ``n`` (distinct numbers are distinct events)
    valid: Callable[[int], bytes]
    sign: Callable[[int, str, bytes], Headers]
    #: query strings a real platform appends (Twilio voice steps)
    queries: tuple[str, ...] = ("",)

    def target(self, query: str = "") -> str:
        return self.path + (f"?{query}" if query else "")


def _h(pairs: dict[str, str]) -> Headers:
    return [(k.encode(), v.encode()) for k, v in pairs.items()]


def _slack_headers(body: bytes, timestamp: int) -> Headers:
    """Slack's v0 signature: by slack_sdk's own code, or by hand for bytes it cannot sign (not UTF-8)."""
    try:
        headers = signed_headers(body, secret=SLACK_SECRET, timestamp=timestamp)
    except UnicodeDecodeError:
        base = b"v0:%d:" % timestamp + body
        digest = hmac.new(SLACK_SECRET.encode(), base, hashlib.sha256).hexdigest()
        headers = {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}
    return _h({k: v for k, v in headers.items() if k != "Content-Type"})


def sign_slack(port: int, target: str, body: bytes) -> Headers:
    return _slack_headers(body, int(time.time()))


def sign_twilio(port: int, target: str, body: bytes) -> Headers:
    """``X-Twilio-Signature`` by Twilio's own validator, over the public URL and the form."""
    from twilio.request_validator import RequestValidator

    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        pairs = []
    params = MultiDict(pairs)  # repeated names: Twilio signs every value
    url = f"http://127.0.0.1:{port}{target}"
    return _h({"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, params)})


def sign_telegram(port: int, target: str, body: bytes) -> Headers:
    return _h({"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET})


def sign_meta(port: int, target: str, body: bytes) -> Headers:
    return _h({"X-Hub-Signature-256": meta_signature(body, APP_SECRET)})


def sign_teams(port: int, target: str, body: bytes) -> Headers:
    """A Bot Framework JWT from the test issuer; it does not depend on the body (no ``serviceurl``)."""
    return _h({"Authorization": f"Bearer {issue_token()}"})


def sign_nothing(port: int, target: str, body: bytes) -> Headers:
    return []


def _slack_valid(n: int) -> bytes:
    return event_body(message(f"question {n}", user=f"U{n:07d}", ts=f"1700000000.{n:06d}"), event_id=f"EvF{n}")


def _sms_valid(sender: str, to: str) -> Callable[[int], bytes]:
    def build(n: int) -> bytes:
        return urlencode(message_params(f"question {n}", sender, to, f"SMfuzz{n:026d}")).encode()

    return build


def _voice_valid(speech: bool) -> Callable[[int], bytes]:
    def build(n: int) -> bytes:
        extra = {"SpeechResult": f"question {n}", "Confidence": "0.9"} if speech else {}
        return urlencode(call_params(f"CAfuzz{n:026d}", **extra)).encode()

    return build


def _telegram_valid(n: int) -> bytes:
    update = text_update(f"question {n}", chat_id=1000 + n, user_id=1000 + n) if n % 3 else callback_update(
        "fb:+:msg_1", chat_id=1000 + n)
    return json.dumps(update).encode()


def _meta_valid(obj: str) -> Callable[[int], bytes]:
    def build(n: int) -> bytes:
        return payload([text_item(f"question {n}", sender=f"{PSID}{n}", mid=f"m.fuzz.{n}")], obj=obj)

    return build


def _whatsapp_cloud_valid(n: int) -> bytes:
    return wa_payload([wa_text(f"question {n}", wa_id=f"1555000{n}", wamid=f"wamid.fuzz.{n}")])
def _teams_valid(n: int) -> bytes:
    activity: dict[str, Any] = {
        "type": "message", "id": f"fuzz{n}", "channelId": "msteams", "serviceUrl": TEAMS_SERVICE_URL[0],
        "from": {"id": f"29:user{n}", "aadObjectId": f"aad-{n}"}, "recipient": {"id": TEAMS_BOT},
        "conversation": {"id": f"{PERSONAL}-{n}", "conversationType": "personal", "tenantId": TENANT},
        "text": f"question {n}",
    }
    if n % 3 == 0:
        activity.update(type="invoke", name="message/submitAction", replyToId="1",
                        value={"actionName": "feedback", "actionValue": {"reaction": "like"}})
    return json.dumps(activity).encode()


def _web_valid(n: int) -> bytes:
    return json.dumps({"sessionId": f"fuzz-session-{n}", "message": f"question {n}"}).encode()


def _web_feedback_valid(n: int) -> bytes:
    return json.dumps({"sessionId": f"fuzz-session-{n}", "messageId": f"msg_{n}", "feedback": "positive"}).encode()


USER, BOT = "+15551230001", SMS_FROM

#: every signed webhook (and sub-path) of the gateway
WEBHOOKS: tuple[Surface, ...] = (
    Surface("slack", "/webhooks/slack", JSON, _slack_valid, sign_slack),
    Surface("sms", "/webhooks/sms", FORM, _sms_valid(USER, BOT), sign_twilio),
    Surface("sms-status", "/webhooks/sms/status", FORM, _sms_valid(USER, BOT), sign_twilio),
    Surface("whatsapp", "/webhooks/wa", FORM, _sms_valid(f"whatsapp:{USER}", WA_FROM), sign_twilio),
    Surface("whatsapp-status", "/webhooks/wa/status", FORM, _sms_valid(f"whatsapp:{USER}", WA_FROM), sign_twilio),
    Surface("voice", "/webhooks/phone", FORM, _voice_valid(False), sign_twilio),
    Surface("voice-gather", "/webhooks/phone/gather", FORM, _voice_valid(True), sign_twilio,
            ("step=1", "step=2&silence=1", "step=99999999999999999999", "step=-1", "")),
    Surface("voice-continue", "/webhooks/phone/continue", FORM, _voice_valid(False), sign_twilio,
            ("step=1", "step=0", "")),
    Surface("telegram", "/webhooks/tg", JSON, _telegram_valid, sign_telegram),
    Surface("messenger", "/webhooks/fb", JSON, _meta_valid("page"), sign_meta),
    Surface("instagram", "/webhooks/ig", JSON, _meta_valid("instagram"), sign_meta),
    Surface("whatsapp-cloud", "/webhooks/wac", JSON, _whatsapp_cloud_valid, sign_meta),
    Surface("teams", "/webhooks/teams", JSON, _teams_valid, sign_teams),
)

#: the unsigned browser-facing endpoints of the web chat
WEB: tuple[Surface, ...] = (
    Surface("web-messages", "/chat/web/messages", JSON, _web_valid, sign_nothing),
    Surface("web-feedback", "/chat/web/feedback", JSON, _web_feedback_valid, sign_nothing),
)

SURFACES: dict[str, Surface] = {s.name: s for s in (*WEBHOOKS, *WEB)}


def forged(surface: Surface, port: int, target: str, body: bytes, other_body: bytes) -> Headers:
    """A genuine signature of ``other_body``: wrong for ``body``.

    Telegram's secret does not depend on the body, and Twilio signs each distinct value once, so a
    "forgery" that is in fact the right signature is replaced by a wrong secret. A Teams token does
    not sign the body at all: its forgery is a token signed by an unknown key.
    """
    if surface.name == "teams":  # a token signed by a key nobody published
        return _h({"Authorization": f"Bearer {issue_token(rogue=True)}"})
    headers = surface.sign(port, target, other_body)
    if headers == surface.sign(port, target, body):
        return [(b"X-Telegram-Bot-Api-Secret-Token", b"s3cr3t-Token_valuX")]
    return headers


def stale_slack_headers(body: bytes, age: float) -> Headers:
    """A genuine Slack signature made ``age`` seconds ago (a captured request, replayed)."""
    return _slack_headers(body, int(time.time() - age))


def any_json(body: bytes) -> Any:
    return json.loads(body)
