"""Real mail servers for tests: a private Dovecot IMAP instance and an in-process aiosmtpd SMTP server.

Dovecot runs on a free port with its own config, state and maildir inside a temp directory (see
TESTING.md for why each setting is there); mail is put in with the standard library's ``imaplib``
``APPEND``, live sessions are cut with ``doveadm kick``. The SMTP server accepts ``AUTH PLAIN``
without TLS, keeps every message it receives, and can refuse the next messages with a chosen code.
"""

from __future__ import annotations

import email
import email.utils
import imaplib
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
_NO_DOVECOT = "dovecot binary not found: apt-get install dovecot-imapd (scripts/ci-deps.d/email.sh does it)"

PASSWORD = "s3cret-pw"
ADDRESS = "bot@example.test"
_USERS = 200

_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
info_log_path = {tmp}/dovecot.log
# TLS is offered (STARTTLS on the plain port, implicit TLS on the imaps port), never required.
ssl = yes
ssl_cert = <{tmp}/cert.pem
ssl_key = <{tmp}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{tmp}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp}/passwd
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={tmp}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def make_certificate(cert: Path, key: Path) -> None:
    """A self-signed certificate for localhost and 127.0.0.1, valid for a day."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )


def server_tls_context(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, cert.with_name("key.pem"))
    return context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dovecot:
    """A private Dovecot instance; each test gets its own user (:meth:`mailbox`)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.tls_port = free_port()
        self.config = tmp / "dovecot.conf"
        self.config.write_text(_CONFIG.format(tmp=tmp, port=self.port, tls_port=self.tls_port))
        #: the self-signed certificate of both servers, for ``tls_ca_file``
        self.cert = tmp / "cert.pem"
        self._users = 0

    def start(self) -> None:
        assert DOVECOT is not None
        # Dovecot drops privileges to "mail" and must traverse the temp dir.
        os.chmod(self.tmp, 0o755)
        make_certificate(self.cert, self.tmp / "key.pem")
        for sub in ("mail", "home", "run", "state"):
            (self.tmp / sub).mkdir(exist_ok=True)
        # Every user exists from the start: Dovecot may miss a passwd-file change made within a second.
        lines = [f"bot{i}:{{PLAIN}}{PASSWORD}" for i in range(1, _USERS + 1)]
        # passwd-file extra fields: userdb_imap_capability overrides the post-login capabilities.
        lines += [f"plain{i}:{{PLAIN}}{PASSWORD}::::::userdb_imap_capability=IMAP4rev1" for i in range(1, _USERS + 1)]
        (self.tmp / "passwd").write_text("\n".join(lines) + "\n")
        subprocess.run(["chown", "-R", "mail:mail", str(self.tmp / "mail"), str(self.tmp / "home")], check=True)
        subprocess.run([DOVECOT, "-c", str(self.config)], check=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dovecot did not start: {self.log()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run([DOVEADM, "-c", str(self.config), "stop"], check=False, capture_output=True)

    def log(self) -> str:
        path = self.tmp / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def mailbox(self, *, idle: bool = True) -> Mailbox:
        """A fresh user with an empty INBOX; ``idle=False`` hides IDLE (and MOVE, UIDPLUS) from it."""
        self._users += 1
        if self._users > _USERS:
            raise RuntimeError("more mailboxes than prepared users: raise _USERS")
        return Mailbox(self, f"{'bot' if idle else 'plain'}{self._users}")


class Mailbox:
    """One user's mail on the Dovecot server, driven with the standard library's imaplib."""

    def __init__(self, server: Dovecot, user: str) -> None:
        self.server = server
        self.user = user
        self.port = server.port

    def kick(self) -> None:
        """Cut every live IMAP session of this user (the server stays up)."""
        subprocess.run(
            [DOVEADM, "-c", str(self.server.config), "kick", self.user], check=True, capture_output=True
        )

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The IMAP half of an email channel config pointing at this mailbox."""
        base: dict[str, Any] = {
            "imap_host": "127.0.0.1",
            "imap_port": self.port,
            "imap_security": "none",
            "username": self.user,
            "password": PASSWORD,
            "address": ADDRESS,
        }
        base.update(overrides)
        return base

    def _client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(self.user, PASSWORD)
        return client

    def append(
        self, message: EmailMessage | bytes, mailbox: str = "INBOX", flags: str = "", received: float | None = None
    ) -> None:
        """Deliver ``message``; ``received`` (epoch seconds) sets its arrival date."""
        raw = message if isinstance(message, bytes) else message.as_bytes()
        client = self._client()
        try:
            when = imaplib.Time2Internaldate(received) if received is not None else None
            status, data = client.append(mailbox, f"({flags})" if flags else None, when, raw)
            assert status == "OK", data
        finally:
            client.logout()

    def create(self, mailbox: str) -> None:
        client = self._client()
        try:
            client.create(mailbox)
        finally:
            client.logout()

    def delete(self, mailbox: str) -> None:
        client = self._client()
        try:
            client.delete(mailbox)
        finally:
            client.logout()

    def flags(self, mailbox: str = "INBOX") -> dict[str, set[str]]:
        """Message-ID → flags of every message in ``mailbox``."""
        client = self._client()
        try:
            status, count = client.select(mailbox)
            if status != "OK" or count[0] == b"0":
                return {}
            status, data = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            result: dict[str, set[str]] = {}
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item
                flags = re.findall(rb"\\\w+", head.split(b"FLAGS", 1)[1].split(b")")[0])
                msg = email.message_from_bytes(body, policy=default_policy)
                result[str(msg["Message-ID"]).strip()] = {f.decode() for f in flags}
            return result
        finally:
            client.logout()


@dataclass
class SmtpSink:
    """What the SMTP server received, and failures it was told to answer with."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    _fail: list[str] = field(default_factory=list)
    port: int = 0
    security: str = "none"

    def fail_next(self, reply: str, count: int = 1) -> None:
        """Answer the next ``count`` DATA commands with ``reply`` (e.g. ``451 4.3.0 try later``)."""
        self._fail.extend([reply] * count)

    @property
    def refusals_left(self) -> int:
        """How many of the failures asked for are still to be answered."""
        return len(self._fail)

    def settings(self) -> dict[str, Any]:
        host = "127.0.0.1" if self.security == "none" else "localhost"
        return {"smtp_host": host, "smtp_port": self.port, "smtp_security": self.security}

    # aiosmtpd handler hooks
    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self._fail:
            return self._fail.pop(0)
        raw = envelope.original_content or b""
        msg = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"

    def authenticate(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Dovecot]:
    """One private Dovecot for the test session (stopping one takes seconds)."""
    if DOVECOT is None:
        pytest.skip(_NO_DOVECOT)
    # Not pytest's tmp_path: its parents are 0700 and Dovecot's unprivileged processes must traverse them.
    tmp = Path(tempfile.mkdtemp(prefix="switchboard-dovecot-"))
    server = Dovecot(tmp)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_server: Dovecot) -> Mailbox:
    """A fresh, empty mailbox (its own Dovecot user) on the session's Dovecot."""
    return dovecot_server.mailbox()


@contextmanager
def serving_smtp(security: str = "none", cert: Path | None = None) -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd, in a thread) that offers AUTH and keeps what it receives.

    ``security``: ``none``, ``starttls`` (required before MAIL) or ``tls`` (implicit), with ``cert``.
    """
    sink = SmtpSink(port=free_port(), security=security)
    tls: dict[str, Any] = {}
    if security == "starttls":
        assert cert is not None
        tls = {"tls_context": server_tls_context(cert), "require_starttls": True}
    elif security == "tls":
        assert cert is not None
        tls = {"ssl_context": server_tls_context(cert)}
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=sink.port,
        authenticator=sink.authenticate,
        # AUTH is offered even without TLS; tests check it was used (requiring it without TLS
        # makes aiosmtpd warn, and warnings are errors here).
        auth_required=False,
        auth_require_tls=False,
        **tls,
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A plain SMTP server with AUTH that keeps what it receives."""
    with serving_smtp() as sink:
        yield sink


def make_mail(
    text: str = "Hello, what are your opening hours?",
    *,
    sender: str = "Alice Example <Alice@Example.org>",
    subject: str = "Opening hours",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A plain-text mail to the bot, as a person's mail client would send it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ADDRESS
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = message_id or email.utils.make_msgid(domain="example.org")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    return msg
