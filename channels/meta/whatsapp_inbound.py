"""WhatsApp Cloud API webhooks (``object: whatsapp_business_account``) to events and statuses.

Shapes follow Meta's messages webhook reference
(developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages).
Every ``entry[].changes[]`` with ``field: messages`` is read; changes for another business number
(one Meta app may serve several) are left to the channel that owns that number.

What reaches the agent, per message ``type``:

* ``text``: the text; ``button`` (a template's quick reply): the button's text;
* ``interactive``: the title of the reply button or list row the person chose; our own
  👍/👎/retry buttons become feedback and retry events instead;
* ``image``, ``video``, ``audio`` (a voice message when ``voice``), ``document``, ``sticker``:
  the caption first, then one media line with a signed gateway link (the media id needs the
  access token to download, so the agent never gets Meta's URL);
* ``location``, ``contacts``: one line each; ``order``: a line naming the item count;
* ``unsupported``/``unknown``: a line saying the platform did not pass the message on.

Nothing reaches the agent for ``reaction`` (a reaction is not a question), ``system`` (number
changes), ``request_welcome`` and ``statuses[]`` (our own messages' sent/delivered/read/failed
reports; failures are returned for the channel to log). A forwarded message and a reply that
quotes an earlier message say so in one line after the text (the webhook names only the quoted
message's id, not its text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from channels.meta.events import parse_feedback
from gateway import media
from gateway.events import EventKind, Identity, InboundEvent
from gateway.media import Attachment

OBJECT = "whatsapp_business_account"
#: the Identity's channel_type, so the Chatbase userId reads ``wa.<phone_number_id>.<wa_id>``
IDENTITY_TYPE = "wa"
RETRY_PREFIX = "SB_RETRY:"
#: a media id to the signed link the agent may follow
Linker = Callable[[str], str]
UNSUPPORTED = "[The user sent a kind of message the platform does not pass on to apps]"
_MEDIA = ("image", "video", "audio", "document", "sticker")


@dataclass(frozen=True, slots=True)
class FailedStatus:
    """A ``failed`` status of a message this number sent."""

    wamid: str
    recipient: str
    code: int | None
    reason: str


@dataclass(slots=True)
class Batch:
    """What one webhook POST holds for this channel's number."""

    events: list[InboundEvent] = field(default_factory=list)
    failed: list[FailedStatus] = field(default_factory=list)
    #: phone number ids of changes that were not ours
    foreign: set[str] = field(default_factory=set)


def retry_payload(message_id: str, conversation_id: str | None) -> str:
    """The id of the retry button under the answer ``message_id`` (ids percent-encoded)."""
    return f"{RETRY_PREFIX}{quote(message_id, safe='')}:{quote(conversation_id or '', safe='')}"


def parse_retry(payload: str | None) -> dict[str, str] | None:
    if not payload or not payload.startswith(RETRY_PREFIX):
        return None
    message_id, _, conversation_id = payload[len(RETRY_PREFIX) :].partition(":")
    if not message_id:
        return None
    meta = {"message_id": unquote(message_id)}
    if conversation_id:
        meta["conversation_id"] = unquote(conversation_id)
    return meta


def read_payload(body: dict[str, Any], *, channel: str, phone_number_id: str, link: Linker) -> Batch:
    """The events (oldest first) and failed statuses of one webhook body."""
    batch = Batch()
    found: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    for entry in _objects(body.get("entry")):
        for change in _objects(entry.get("changes")):
            value = change.get("value")
            if change.get("field") != "messages" or not isinstance(value, dict):
                continue
            metadata = value.get("metadata")
            number = str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""
            if number != phone_number_id:
                batch.foreign.add(number or "?")
                continue
            names = {str(c.get("wa_id")): _profile_name(c) for c in _objects(value.get("contacts"))}
            found += [(_int(m.get("timestamp")), m, names) for m in _objects(value.get("messages"))]
            batch.failed += [s for s in map(_failed, _objects(value.get("statuses"))) if s is not None]
    # Oldest first, and made in that order: the journal orders a conversation by received_at.
    found.sort(key=lambda item: item[0])  # stable: one timestamp keeps the batch's order
    for _, message, names in found:
        event = _event(message, channel, phone_number_id, names, link)
        if event is not None:
            batch.events.append(event)
    return batch


def _event(
    message: dict[str, Any], channel: str, number: str, names: dict[str, str], link: Linker
) -> InboundEvent | None:
    wamid, sender, kind = message.get("id"), message.get("from"), message.get("type")
    if not isinstance(wamid, str) or not wamid or not isinstance(sender, str) or not sender:
        return None
    event_kind: EventKind = "message"
    meta: dict[str, Any] = {}
    if kind == "interactive":
        chosen = _chosen(message.get("interactive"))
        button = parse_feedback(chosen[0]) if chosen else None
        retry = parse_retry(chosen[0]) if chosen else None
        if button is not None:
            event_kind, meta = "feedback", dict(button)
        elif retry is not None:
            event_kind, meta = "retry", dict(retry)
        text = chosen[1] if chosen else _form(message.get("interactive"))
    else:
        text = _text(message, kind, link)
    if event_kind != "message":
        text = ""
    elif not text or not text.strip():
        return None
    else:
        if kind not in ("interactive", "button"):  # their context is the message with the buttons
            text = "\n".join([text, *_context_lines(message.get("context"), message.get("referral"))])
        if names.get(sender):
            meta["profile_name"] = names[sender]
    return InboundEvent(
        channel=channel,
        key=wamid,
        identity=Identity(IDENTITY_TYPE, number, sender),
        scope=sender,
        text=text.strip(),
        kind=event_kind,
        reply={"to": sender, "wamid": wamid},
        meta=meta,
    )


def _text(message: dict[str, Any], kind: Any, link: Linker) -> str | None:
    content = message.get(kind) if isinstance(kind, str) else None
    content = content if isinstance(content, dict) else {}
    if kind == "text":
        return _str(content.get("body"))
    if kind == "button":
        return _str(content.get("text")) or _str(content.get("payload"))
    if kind in _MEDIA:
        return media.message_text(_str(content.get("caption")), [_attachment(str(kind), content, link)])
    if kind == "location":
        lat, lon = content.get("latitude"), content.get("longitude")
        if not isinstance(lat, int | float) or not isinstance(lon, int | float):
            return None
        label = ", ".join(x for x in (_str(content.get("name")), _str(content.get("address"))) if x)
        return media.location(float(lat), float(lon), label or None)
    if kind == "contacts":
        cards = [media.contact(_card_name(c), _card_phone(c)) for c in _objects(message.get("contacts"))]
        return "\n".join(cards) or None
    if kind == "order":
        items = content.get("product_items")
        count = len(items) if isinstance(items, list) else 0
        return media.message_text(_str(content.get("text")),
                                  [f"[The user sent an order of {count} item(s) from the catalogue]"])
    if kind in ("unsupported", "unknown"):
        return UNSUPPORTED
    return None  # reaction, system, request_welcome, ephemeral...: nothing to answer


def _attachment(kind: str, content: dict[str, Any], link: Linker) -> Attachment:
    media_id = _str(content.get("id"))
    label = {"image": "photo", "video": "video", "document": "file", "sticker": "sticker"}.get(kind, "audio file")
    if kind == "audio" and content.get("voice"):
        label = "voice message"
    if kind == "sticker" and content.get("animated"):
        label = "animated sticker"
    return Attachment(label, link(media_id) if media_id else None, mime=_str(content.get("mime_type")),
                      name=_str(content.get("filename")))


def _chosen(interactive: Any) -> tuple[str, str] | None:
    """``(id, title)`` of the reply button or list row a person chose."""
    if not isinstance(interactive, dict):
        return None
    for key in ("button_reply", "list_reply"):
        reply = interactive.get(key)
        if isinstance(reply, dict) and (_str(reply.get("id")) or _str(reply.get("title"))):
            return _str(reply.get("id")) or "", _str(reply.get("title")) or _str(reply.get("id")) or ""
    return None


def _form(interactive: Any) -> str | None:
    """A WhatsApp Flow's answers (``nfm_reply``), as the JSON the flow returned."""
    reply = interactive.get("nfm_reply") if isinstance(interactive, dict) else None
    if not isinstance(reply, dict) or not _str(reply.get("response_json")):
        return None
    return f"[The user submitted a form: {reply['response_json']}]"


def _context_lines(context: Any, referral: Any) -> list[str]:
    lines: list[str] = []
    if isinstance(context, dict):
        if context.get("forwarded") or context.get("frequently_forwarded"):
            lines.append("[The user forwarded this message from another chat]")
        elif context.get("id"):
            lines.append("[The user is replying to an earlier message in this chat]")
        product = context.get("referred_product")
        if isinstance(product, dict) and product.get("product_retailer_id"):
            lines.append(f"[The user is asking about the product {product['product_retailer_id']}]")
    if isinstance(referral, dict) and (referral.get("headline") or referral.get("source_url")):
        what = " ".join(str(referral[k]) for k in ("headline", "source_url") if referral.get(k))
        lines.append(f"[The user came from an ad: {what}]")
    return lines


def _failed(status: dict[str, Any]) -> FailedStatus | None:
    if status.get("status") != "failed" or not _str(status.get("id")):
        return None
    errors = _objects(status.get("errors"))
    first = errors[0] if errors else {}
    data = first.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    reason = "; ".join(str(x) for x in (first.get("title"), details) if x) or "no reason given"
    code = first.get("code")
    return FailedStatus(str(status["id"]), str(status.get("recipient_id") or "?"),
                        code if isinstance(code, int) else None, reason)


def _profile_name(contact: dict[str, Any]) -> str:
    profile = contact.get("profile")
    return str(profile.get("name") or "") if isinstance(profile, dict) else ""


def _card_name(card: dict[str, Any]) -> str:
    name = card.get("name")
    formatted = _str(name.get("formatted_name")) if isinstance(name, dict) else None
    return formatted or "someone"


def _card_phone(card: dict[str, Any]) -> str | None:
    phones = _objects(card.get("phones"))
    return _str(phones[0].get("phone")) if phones else None


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
