"""The ``email`` channel: IMAP in (IDLE or polling), threaded SMTP auto-replies out."""

from __future__ import annotations

import email.utils
from typing import ClassVar

from aiohttp import web

from channels.email.compose import ReplyTarget, compose_reply
from channels.email.imap import ImapError, ImapSession
from channels.email.inbound import Poller
from channels.email.settings import EmailSettings
from channels.email.smtp import send_mail
from channels.email.threads import ThreadIndex
from gateway.channel import Answer, Channel, Progress, Reply, Services
from gateway.events import Identity, InboundEvent

#: attempts to flag an answered mail before leaving it for the operator (the reply went out already)
_FLAG_ATTEMPTS = 2


class EmailChannel(Channel[EmailSettings]):
    """One mailbox answered by the agent; each mail thread is one conversation."""

    type = "email"
    Settings = EmailSettings
    # An answer is always one mail, never split.
    max_text_length: ClassVar[int] = 1_000_000

    def __init__(self, name: str, settings: EmailSettings, services: Services) -> None:
        super().__init__(name, settings, services)
        self.threads = ThreadIndex(services, name)
        self.poller = Poller(self)
        self._folder_ready = False

    def describe(self) -> str:
        s = self.settings
        return (
            f"{s.address}: IMAP {s.imap_host}:{s.imap_port_number} ({s.imap_security}) as {s.username}, "
            f"folder {s.mailbox}; SMTP {s.smtp_host}:{s.smtp_port_number} ({s.smtp_security})"
        )

    def webhook_urls(self, public_url: str) -> list[tuple[str, str]]:
        return []  # mail is fetched, nothing calls us

    def routes(self) -> list[web.RouteDef]:
        return []

    async def forget(self, identity: Identity) -> None:
        """The reply cap's counter for the address (see ``Poller.rate_key``)."""
        if identity.channel_type == self.type:
            await self.services.store.delete_value(self.poller.rate_key(identity.id))

    async def run(self) -> None:
        """Watch the mailbox until cancelled (the core supervises this task)."""
        await self.poller.run()

    def render(self, markdown: str) -> str:
        from gateway.markdown import to_email_text

        return to_email_text(markdown)

    def open_reply(self, event: InboundEvent, progress: Progress) -> Reply:
        return EmailReply(self, event, progress)

    # -- outbound ---------------------------------------------------------------------------------
    async def deliver(self, event: InboundEvent, markdown: str, progress: Progress) -> None:
        """Send the one reply mail for ``event``, then flag the original as answered.

        Each step is recorded in ``progress`` before the next begins, so a turn resumed after a
        crash neither sends a second mail nor skips the flagging. The Message-ID is chosen and
        saved before sending: should a crash fall between sending and saving, the resent copy has
        the same Message-ID and mail clients show it once.
        """
        data = progress.data
        if not data.get("sent"):
            message_id = data.get("message_id")
            if not message_id:
                message_id = data["message_id"] = email.utils.make_msgid(domain=self.settings.domain)
                await progress.save()
            msg = compose_reply(
                ReplyTarget.from_json(event.reply),
                markdown,
                from_address=self.settings.address,
                display_name=self.settings.display_name,
                message_id=message_id,
            )
            await send_mail(self.settings, msg)
            data["sent"] = True
            await progress.save()
            self.log.info("replied to %s (%s)", event.identity.id, message_id)
            await self.threads.remember(message_id, event.scope)
        if not data.get("flagged"):
            await self.mark_answered(event)
            data["flagged"] = True
            await progress.save()

    async def mark_answered(self, event: InboundEvent) -> None:
        """Set \\Seen on the original (and move it when configured); failures are only logged."""
        uid, validity = event.reply.get("uid"), event.reply.get("uidvalidity")
        if not isinstance(uid, int):
            return
        mailbox = str(event.reply.get("mailbox", self.settings.mailbox))
        for attempt in range(1, _FLAG_ATTEMPTS + 1):
            try:
                async with ImapSession(self.settings) as session:
                    if await session.select(mailbox) != validity:
                        self.log.warning("%s was renumbered; not flagging uid %s", mailbox, uid)
                        return
                    await session.add_flags(uid, "\\Answered \\Seen")
                    target = self.settings.processed_mailbox
                    if target:
                        if not self._folder_ready:
                            await session.create(target)
                            self._folder_ready = True
                        await session.move(uid, target)
                return
            except (ImapError, OSError, TimeoutError) as exc:
                level = self.log.warning if attempt == _FLAG_ATTEMPTS else self.log.info
                level("could not flag answered mail uid %s (attempt %s): %s", uid, attempt, exc)


class EmailReply(Reply):
    """Collects the streamed answer and sends it as one mail when it is complete."""

    channel: EmailChannel

    async def finish(self, answer: Answer) -> None:
        await self.channel.deliver(self.event, answer.text, self.progress)
