"""The inbound loop: watch the mailbox (IDLE, or polling), turn new mail into events, reconnect.

Progress is a cursor ``<UIDVALIDITY>:<last UID>`` in the store. Every mail above the cursor is
handled in UID order and the cursor moves past it only after the event was journaled (or the mail
was skipped), so a crash at any point re-reads at most that one mail, and the journal's dedup on
the Message-ID stops it from being answered twice. When there is no cursor yet, or UIDVALIDITY
changed (the UIDs now mean other mail), the mailbox is rescanned for unseen recent mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import socket
import uuid
from typing import TYPE_CHECKING

from channels.email.compose import ReplyTarget
from channels.email.imap import ImapError, ImapSession
from channels.email.parse import ParsedMail, parse_mail
from channels.email.rules import skip_reason
from gateway.errors import StoreUnavailable
from gateway.events import Identity, InboundEvent

if TYPE_CHECKING:
    from channels.email.channel import EmailChannel

#: IDLE is re-issued this often: servers may drop an IDLE session after 30 minutes (RFC 2177)
IDLE_RENEW = 25 * 60.0
#: seconds a watcher's lease lasts without renewal: how long a crashed instance blocks a standby
LEASE_TTL = 30.0
#: a question longer than this is cut; mail bodies can be megabytes of pasted logs
MAX_QUESTION = 16_000
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class Poller:
    """Runs as the channel's supervised background task until cancelled."""

    def __init__(self, channel: EmailChannel) -> None:
        self.channel = channel
        self.settings = channel.settings
        self.log = channel.log
        self.cursor_key = f"email:{channel.name}:cursor"
        self.lease_key = f"email:{channel.name}:watcher"
        #: set after each completed scan; lets tests and operators see the loop is alive
        self.scanned = asyncio.Event()

    async def run(self) -> None:
        """Watch the mailbox while holding the channel's lease in the store.

        With several gateway instances on one store, one watches and the others stand by; when it
        stops (or its lease lapses) another takes over where the cursor says.
        """
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        while True:
            if not await self._lease(owner):
                await asyncio.sleep(LEASE_TTL / 3)
                continue
            watcher = asyncio.create_task(self._connect_forever(), name=f"imap:{self.channel.name}")
            try:
                while not watcher.done():
                    await asyncio.wait([watcher], timeout=LEASE_TTL / 3)
                    if not watcher.done() and not await self._lease(owner):
                        self.log.warning("lost the mailbox lease of %s; standing by", self.channel.name)
                        break
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                # Hand over at once instead of making a standby wait for the lease to lapse.
                with contextlib.suppress(StoreUnavailable):
                    await self.channel.services.store.unlock(self.lease_key, owner)

    async def _lease(self, owner: str) -> bool:
        try:
            return await self.channel.services.store.try_lock(self.lease_key, owner, LEASE_TTL)
        except StoreUnavailable as exc:
            self.log.warning("cannot reach the store for the mailbox lease: %s", exc)
            return False

    async def _connect_forever(self) -> None:
        attempt = 0
        while True:
            try:
                async with ImapSession(self.settings) as session:
                    await session.select(self.settings.mailbox)
                    if attempt:
                        self.log.info("IMAP reconnected to %s", self.settings.imap_host)
                    attempt = 0
                    await self._watch(session)
            except (ImapError, OSError, TimeoutError) as exc:
                kind = "store" if isinstance(exc, StoreUnavailable) else "IMAP"
                self.log.warning("%s trouble on %s: %s", kind, self.channel.name, exc)
            except Exception:
                # A bug must not end the mailbox watch for good; back off and start over.
                self.log.exception("email channel %s: unexpected error in the inbound loop", self.channel.name)
            delay = min(self.settings.reconnect_max, 2.0**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            await asyncio.sleep(delay)

    async def _watch(self, session: ImapSession) -> None:
        while True:
            await self.scan(session)
            if session.has_idle:
                await session.idle(IDLE_RENEW)
            else:
                await asyncio.sleep(self.settings.poll_interval)

    # -- scanning ---------------------------------------------------------------------------------
    async def scan(self, session: ImapSession) -> None:
        """Handle every mail not handled yet, oldest first."""
        validity = session.uidvalidity
        cursor = await self._load_cursor()
        if cursor is not None and cursor[0] == validity:
            last = cursor[1]
            for uid in await session.search("UID", f"{last + 1}:*"):
                if uid > last:  # "n:*" also matches the highest UID when it is below n
                    await self._handle_one(session, uid)
                    await self._save_cursor(validity, uid)
        else:
            if cursor is not None:
                self.log.warning(
                    "UIDVALIDITY of %s changed (%s -> %s): rescanning unseen mail",
                    self.settings.mailbox, cursor[0], validity,
                )
            # Fix the horizon first: mail arriving during the rescan lies above it and is handled next.
            horizon = max(await session.search("UID", "*"), default=0)
            backlog = await session.search(*self._backlog_criteria()) if self.settings.backlog_days else []
            for uid in backlog:
                if uid <= horizon:
                    await self._handle_one(session, uid)
            await self._save_cursor(validity, horizon)
        self.scanned.set()

    def _backlog_criteria(self) -> list[str]:
        since = dt.date.today() - dt.timedelta(days=self.settings.backlog_days)
        return ["UNSEEN", "SINCE", f"{since.day}-{_MONTHS[since.month - 1]}-{since.year}"]

    async def _load_cursor(self) -> tuple[int, int] | None:
        raw = await self.channel.services.store.get_value(self.cursor_key)
        if not raw:
            return None
        validity, _, last = raw.partition(":")
        try:
            return int(validity), int(last)
        except ValueError:
            return None

    async def _save_cursor(self, validity: int, uid: int) -> None:
        await self.channel.services.store.set_value(self.cursor_key, f"{validity}:{uid}")

    # -- one mail ---------------------------------------------------------------------------------
    async def _handle_one(self, session: ImapSession, uid: int) -> None:
        try:
            await self.handle(session, uid)
        except (ImapError, OSError, TimeoutError):
            raise  # the connection or the store: retried after reconnecting
        except Exception:
            # One mail that trips a bug must not block every mail behind it.
            self.log.exception("mail uid=%s could not be handled; leaving it unread and moving on", uid)
            self.channel.services.metrics.errors.labels("email_unhandled_mail").inc()

    async def handle(self, session: ImapSession, uid: int) -> None:
        """Journal mail ``uid`` as an event, or mark it \\Seen and log why it is not answered."""
        raw = await session.fetch(uid)
        if raw is None:
            return  # expunged meanwhile
        # In a thread: reading a large body through the reply parsers takes up to a second or two.
        mail = await asyncio.to_thread(parse_mail, raw)
        reason = skip_reason(mail, self.settings.address)
        question = question_text(mail)
        if reason is None and not question:
            reason = "no text to answer"
        if reason is None:
            reason = await self._rate_limited(mail.reply_addresses[0])
        if reason is not None:
            self.log.info("not answering mail uid=%s from %s: %s", uid, mail.sender or "?", reason)
            self.channel.services.metrics.inbound_events.labels(self.channel.name, "skipped").inc()
            await session.add_flags(uid, "\\Seen")
            return
        key = mail.message_id or f"{session.uidvalidity}:{uid}"
        scope = await self.channel.threads.root_of(mail, fallback=key)
        await self.channel.threads.remember(mail.message_id, scope)
        target = ReplyTarget(mail.reply_to, mail.subject, mail.message_id, mail.references)
        event = InboundEvent(
            channel=self.channel.name,
            key=key,
            identity=Identity("email", self.settings.address, mail.sender),
            scope=scope,
            text=question,
            reply={
                **target.to_json(),
                "uid": uid,
                "uidvalidity": session.uidvalidity,
                "mailbox": self.settings.mailbox,
            },
            meta={"subject": mail.subject, "attachments": list(mail.attachments)},
        )
        await self.channel.services.accept([event])

    def rate_key(self, recipient: str) -> str:
        """The store counter of answers sent to ``recipient`` this hour."""
        return f"email:{self.channel.name}:rate:{recipient}"

    async def _rate_limited(self, recipient: str) -> str | None:
        """Count answers per address they would go to: that is what stops loops and mail bombs."""
        count = await self.channel.services.store.incr(self.rate_key(recipient), ttl=3600)
        limit = self.settings.max_replies_per_hour
        return f"already {limit} answers to {recipient} this hour" if count > limit else None


def question_text(mail: ParsedMail) -> str:
    """What the agent is asked: the new text, the subject when it opens a thread, attachment names."""
    parts: list[str] = []
    body = mail.body
    if len(body) > MAX_QUESTION:
        body = body[:MAX_QUESTION] + " [...]"
    opens_thread = not mail.thread_ids
    if opens_thread and mail.subject and not body.lower().startswith(mail.subject.lower()):
        parts.append(mail.subject)
    if body:
        parts.append(body)
    if not parts:
        return ""
    if mail.attachments:
        parts.append("(Attachments not included: " + ", ".join(mail.attachments) + ")")
    return "\n\n".join(parts)
