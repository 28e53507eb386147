"""Real mail from real clients, through the real path: Dovecot, the email channel over IMAP, the gateway.

Every sample of ``tests/realworld/email`` (sources in ``tests/realworld/SOURCES.md``) is APPENDed
to one mailbox of one Dovecot, one after the other, and what reaches the agent (the emulator's
recorded chat requests) is checked against ``expected.toml``. One gateway and one mailbox serve the
whole corpus, so the test stays fast.
"""

from __future__ import annotations

import imaplib
import tomllib
from pathlib import Path
from typing import Any

import pytest

from switchboard.testing import running_gateway, wait_until
from tests.fakes import mailserver
from tests.fakes.mailserver import PASSWORD, Dovecot, Mailbox, SmtpSink

pytestmark = pytest.mark.dovecot
dovecot_server = mailserver.dovecot_server
smtp_sink = mailserver.smtp_sink

CORPUS = Path(__file__).parent / "realworld" / "email"
EXPECTED: dict[str, dict[str, Any]] = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))


def seen_count(box: Mailbox) -> int:
    client = imaplib.IMAP4("127.0.0.1", box.port, timeout=10)
    try:
        client.login(box.user, PASSWORD)
        client.select("INBOX", readonly=True)
        _, data = client.search(None, "SEEN")
        return len(data[0].split())
    finally:
        client.logout()


def problems(name: str, received: str | None) -> list[str]:
    """What is wrong with what the agent received for sample ``name`` (None: nothing reached it)."""
    want = EXPECTED[name]
    if want.get("ignore"):
        return [] if received is None else [f"should be ignored, agent got {received!r}"]
    if received is None:
        return ["nothing reached the agent"]
    found = []
    if "text" in want and received != want["text"]:
        found.append(f"expected {want['text']!r}")
    found += [f"missing {p!r}" for p in want.get("contains", []) if p not in received]
    found += [f"should not contain {p!r}" for p in want.get("absent", []) if p in received]
    return [f"{problem}; agent got {received!r}" for problem in found]


def test_every_sample_has_expectations_and_a_source() -> None:
    samples = {p.name for p in CORPUS.glob("*.eml")}
    assert len(samples) >= 60
    assert samples == set(EXPECTED)
    sources = (CORPUS.parent / "SOURCES.md").read_text(encoding="utf-8")
    assert [s for s in samples if f"`{s}`" not in sources] == []
    limitations = [s for s, want in EXPECTED.items() if want.get("limitation")]
    assert len(limitations) <= len(samples) * 0.02


async def test_the_corpus_reaches_the_agent_as_a_person_would_read_it(
    dovecot_server: Dovecot, smtp_sink: SmtpSink
) -> None:
    # Polling every 50 ms instead of IDLE: Dovecot batches IDLE notices for about half a second,
    # which, one sample after the other, would make this test take a minute.
    box = dovecot_server.mailbox(idle=False)
    channels = {"mail": {"type": "email", **box.settings(), **smtp_sink.settings(), "poll_interval": 0.05,
                         "max_replies_per_hour": 1000}}
    received: dict[str, str | None] = {}
    async with running_gateway(channels) as gw:

        def chats() -> list[str]:
            return [r.json["message"] for r in gw.emulator.requests
                    if r.method == "POST" and r.path.endswith("/chat") and "message" in (r.json or {})]

        # One at a time, so each chat request belongs to the sample just delivered.
        for count, name in enumerate(sorted(EXPECTED), 1):
            before = len(chats())
            box.append((CORPUS / name).read_bytes())
            await wait_until(lambda n=before, c=count: len(chats()) > n or seen_count(box) >= c, f"{name} handled",
                             timeout=30)
            await gw.idle()
            new = chats()[before:]
            assert len(new) <= 1, f"{name}: {len(new)} agent calls"
            received[name] = new[0] if new else None

    failures = {name: p for name, got in received.items() if (p := problems(name, got))}
    limitations = {name for name, want in EXPECTED.items() if want.get("limitation")}
    unexpected = {name: p for name, p in failures.items() if name not in limitations}
    assert unexpected == {}, "\n".join(f"{name}: {'; '.join(p)}" for name, p in unexpected.items())
