"""One IMAP session over aioimaplib: login, SELECT, UID search/fetch/store/move, and IDLE.

aioimaplib leaves pending commands waiting when the server hangs up (``doveadm kick``, a NAT
timeout, a restart), so every call here races the connection-lost callback and raises
:class:`ImapConnectionLost` instead of hanging until a timeout. aioimaplib has no STARTTLS
helper; :meth:`ImapSession._starttls` upgrades the transport with ``loop.start_tls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import aioimaplib

from channels.email.settings import EmailSettings
from channels.email.smtp import tls_context

T = TypeVar("T")
# aioimaplib's DEBUG log carries whole mails and, when a password needs escaping, the password.
# Keep it quiet unless the operator configured that logger on purpose.
if logging.getLogger("aioimaplib").level == logging.NOTSET:
    logging.getLogger("aioimaplib").setLevel(logging.INFO)
COMMAND_TIMEOUT = 30.0
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_BODY = re.compile(rb"^\d+ FETCH \(.*BODY\[\] \{\d+\}$")


class ImapError(Exception):
    """The IMAP server refused a command or the session broke; the poller reconnects."""


class ImapConnectionLost(ImapError, ConnectionError):
    """The server closed the connection (BYE, reset, kicked)."""


class ImapSession:
    """A logged-in connection with one selected mailbox; use as ``async with``."""

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self.client: aioimaplib.IMAP4 | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.uidvalidity = 0
        self._lost: asyncio.Future[None] | None = None

    async def __aenter__(self) -> ImapSession:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connection ------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, secure, log in, and refresh the capabilities (they change after login)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        if s.imap_security == "tls":
            self.client = aioimaplib.IMAP4_SSL(
                host=s.imap_host, port=s.imap_port_number, timeout=COMMAND_TIMEOUT, ssl_context=tls_context(s)
            )
            self.client.protocol.conn_lost_cb = self._connection_lost
        else:
            self.client = aioimaplib.IMAP4(
                host=s.imap_host, port=s.imap_port_number, timeout=COMMAND_TIMEOUT,
                conn_lost_cb=self._connection_lost,
            )
        await self._call(self.client.wait_hello_from_server())
        if s.imap_security == "starttls":
            await self._starttls()
        response = await self._call(self.client.login(aioimaplib.quoted(s.username), s.password.get_secret_value()))
        if response.result != "OK":
            # The server's text, never ours: it cannot contain the password.
            raise ImapError(f"IMAP login as {s.username!r} refused: {_text(response.lines)}")
        await self._call(self.client.protocol.capability())
        self.capabilities = frozenset(c.upper() for c in self.client.protocol.capabilities)

    async def _starttls(self) -> None:
        assert self.client is not None
        protocol = self.client.protocol
        if "STARTTLS" not in {c.upper() for c in protocol.capabilities}:
            raise ImapError("imap_security is starttls but the server does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._call(protocol.execute(command))
        if response.result != "OK":
            raise ImapError(f"STARTTLS refused: {_text(response.lines)}")
        loop = asyncio.get_running_loop()
        transport = await self._call(
            loop.start_tls(
                protocol.transport, protocol, tls_context(self.settings), server_hostname=self.settings.imap_host
            )
        )
        protocol.transport = transport
        # RFC 3501 §6.2.1: capabilities learnt before TLS must be discarded.
        await self._call(protocol.capability())

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    async def close(self) -> None:
        """Log out politely when possible; always drop the transport."""
        client, self.client = self.client, None
        if client is None:
            return
        # No LOGOUT while IDLE is pending: aioimaplib would queue it behind the IDLE until timeout.
        if self._lost is not None and not self._lost.done() and not client.has_pending_idle():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._call(client.logout()), 5)
        transport = client.protocol.transport
        if transport is not None:
            transport.close()
        for task in list(client.tasks) + list(client.protocol.tasks):
            task.cancel()

    async def _call(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the connection goes away first."""
        lost = self._lost
        task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
        if lost is None:
            return await task
        try:
            waiters: list[asyncio.Future[Any]] = [task, lost]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            raise ImapConnectionLost("IMAP connection closed by the server")
        try:
            return task.result()
        except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
            if lost.done():
                raise ImapConnectionLost("IMAP connection closed by the server") from exc
            raise ImapError(f"IMAP command failed: {exc!r}") from exc

    @property
    def _c(self) -> aioimaplib.IMAP4:
        if self.client is None:
            raise ImapConnectionLost("IMAP session is closed")
        return self.client

    async def _ok(self, awaitable: Awaitable[Any], what: str) -> list[Any]:
        response = await self._call(awaitable)
        if response.result != "OK":
            if any(b"BYE" in line for line in response.lines if isinstance(line, bytes)):
                raise ImapConnectionLost(f"{what}: {_text(response.lines)}")
            raise ImapError(f"{what} failed: {_text(response.lines)}")
        return list(response.lines)

    # -- commands ----------------------------------------------------------------------------------
    @property
    def has_idle(self) -> bool:
        return "IDLE" in self.capabilities

    async def select(self, mailbox: str) -> int:
        """SELECT ``mailbox``; return its UIDVALIDITY (also kept on the session)."""
        lines = await self._ok(self._c.select(_quote(mailbox)), f"SELECT {mailbox}")
        blob = b" ".join(line for line in lines if isinstance(line, bytes | bytearray))
        found = _UIDVALIDITY.search(blob)
        if not found:
            raise ImapError(f"SELECT {mailbox}: the server sent no UIDVALIDITY")
        self.uidvalidity = int(found.group(1))
        return self.uidvalidity

    async def search(self, *criteria: str) -> list[int]:
        """UIDs matching ``criteria`` (``UID SEARCH``), ascending."""
        lines = await self._ok(self._c.uid_search(*criteria, charset=None), "UID SEARCH")
        uids: set[int] = set()
        # aioimaplib strips "* SEARCH" from untagged results; the last line is the tagged status text.
        for line in lines[:-1]:
            if isinstance(line, bytes):
                uids.update(int(tok) for tok in line.split() if tok.isdigit())
        return sorted(uids)

    async def fetch(self, uid: int) -> bytes | None:
        """The whole message ``uid`` without setting \\Seen; None when it no longer exists."""
        lines = await self._ok(self._c.uid("fetch", str(uid), "(BODY.PEEK[])"), f"UID FETCH {uid}")
        for index, line in enumerate(lines[:-1]):
            if isinstance(line, bytes) and _FETCH_BODY.match(line):
                literal = lines[index + 1]
                if isinstance(literal, bytes | bytearray):
                    return bytes(literal)
        return None

    async def add_flags(self, uid: int, flags: str) -> None:
        await self._ok(self._c.uid("store", str(uid), "+FLAGS.SILENT", f"({flags})"), f"UID STORE {uid}")

    async def move(self, uid: int, mailbox: str) -> None:
        """Move ``uid`` to ``mailbox``: MOVE when offered, else COPY and delete the original."""
        target = _quote(mailbox)
        if "MOVE" in self.capabilities:
            await self._ok(self._c.uid("move", str(uid), target), f"UID MOVE {uid}")
            return
        await self._ok(self._c.uid("copy", str(uid), target), f"UID COPY {uid}")
        await self.add_flags(uid, "\\Deleted")
        if "UIDPLUS" in self.capabilities:
            # A plain EXPUNGE would also remove mail someone else marked deleted; UID EXPUNGE is exact.
            await self._ok(self._c.uid("expunge", str(uid)), f"UID EXPUNGE {uid}")

    async def create(self, mailbox: str) -> None:
        """CREATE ``mailbox``; "already exists" is fine."""
        await self._call(self._c.create(_quote(mailbox)))

    async def noop(self) -> None:
        await self._ok(self._c.noop(), "NOOP")

    async def idle(self, timeout: float) -> None:
        """IDLE until the server reports a change or ``timeout`` passes, then leave IDLE."""
        client = self._c
        queue = client.protocol.idle_queue
        while not queue.empty():  # pushes from an earlier IDLE were already acted upon
            queue.get_nowait()
        idle_task = await self._call(client.idle_start(timeout=timeout + 60))
        try:
            pushed = await self._call(_wait_push(client, timeout))
        finally:
            if client.has_pending_idle() and self._lost is not None and not self._lost.done():
                client.idle_done()
        response = await self._call(asyncio.wait_for(idle_task, COMMAND_TIMEOUT))
        if any(b"BYE" in line for line in pushed if isinstance(line, bytes)):
            raise ImapConnectionLost("IMAP server said BYE during IDLE")
        if response.result != "OK":
            raise ImapError(f"IDLE ended with {response.result}: {_text(response.lines)}")


async def _wait_push(client: aioimaplib.IMAP4, timeout: float) -> list[Any]:
    try:
        return list(await client.wait_server_push(timeout=timeout))
    except TimeoutError:
        return []


def _quote(mailbox: str) -> str:
    return aioimaplib.quoted(mailbox)


def _text(lines: list[Any]) -> str:
    return " ".join(
        line.decode("utf-8", "replace") if isinstance(line, bytes | bytearray) else str(line) for line in lines
    )[:300]
