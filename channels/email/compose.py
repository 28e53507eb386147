"""The reply mail: threaded headers, loop markers, and text + HTML parts of the agent's answer."""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from gateway import markdown

_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|vs|ref|rif|odp)(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
#: mail servers reject header lines over 998 characters; long threads keep their root and recent ids
_MAX_REFERENCES = 20


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """What the reply to one inbound mail needs; stored in ``InboundEvent.reply`` as JSON."""

    to: str
    subject: str
    message_id: str | None
    references: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "subject": self.subject,
            "message_id": self.message_id,
            "references": list(self.references),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplyTarget:
        return cls(
            to=str(data["to"]),
            subject=str(data.get("subject", "")),
            message_id=data.get("message_id"),
            references=tuple(data.get("references", ())),
        )


def reply_subject(subject: str) -> str:
    """``Re: <subject>`` with exactly one prefix, whatever the sender's client put there."""
    base = _REPLY_PREFIX.sub("", subject).strip()
    return f"Re: {base}" if base else "Re: your message"


def thread_references(target: ReplyTarget) -> list[str]:
    """References of the reply: the original's References plus its Message-ID (RFC 5322 §3.6.4)."""
    refs = list(target.references)
    if target.message_id and target.message_id not in refs:
        refs.append(target.message_id)
    if len(refs) > _MAX_REFERENCES:
        refs = refs[:1] + refs[-(_MAX_REFERENCES - 1) :]
    return refs


def compose_reply(
    target: ReplyTarget,
    answer_markdown: str,
    *,
    from_address: str,
    display_name: str = "",
    message_id: str,
) -> EmailMessage:
    """One ``multipart/alternative`` reply in the sender's thread, marked as an auto-reply."""
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr((display_name, from_address)) if display_name else from_address
    msg["To"] = target.to
    msg["Subject"] = reply_subject(target.subject)
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = message_id
    if target.message_id:
        msg["In-Reply-To"] = target.message_id
    refs = thread_references(target)
    if refs:
        msg["References"] = " ".join(refs)
    # RFC 3834: our answers are auto-replies, so well-behaved responders never answer them.
    msg["Auto-Submitted"] = "auto-replied"
    # Exchange/Outlook honour this instead and suppress out-of-office answers to us.
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = from_address
    msg.set_content(markdown.to_email_text(answer_markdown))
    msg.add_alternative(_html_document(markdown.to_html(answer_markdown)), subtype="html")
    return msg


def _html_document(body: str) -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        f'<body style="font-family: sans-serif; line-height: 1.4">{body}</body></html>'
    )
