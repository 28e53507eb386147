"""``python -m bench.load SPEC OUT``: the load generator, in its own process.

SPEC is a JSON file (see :class:`Spec`); OUT receives ``{"results": [[i, sent_at, seconds, status],
...]}`` where ``sent_at`` is ``time.monotonic()`` when request ``i`` started and ``seconds`` how long
its response took. Requests are signed webhooks, built and signed before the clock starts, with the
platforms' own SDK code (``slack_sdk``'s signature verifier, ``twilio``'s request validator).

Conversation ``i`` is Slack DM channel ``D<i>`` of user ``U<i>``, or SMS sender ``+1555<i>``; every
request is the first message of its own conversation.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator

from bench.rawhttp import Connection, serialize

SMS_TO = "+15550000000"
TEAM = "T0000001"  # the fake Slack's workspace


@dataclass
class Spec:
    kind: str  # "slack" or "twilio"
    targets: list[str]  # webhook URLs, used round-robin
    first: int
    count: int
    mode: str = "burst"  # burst: `concurrency` in flight; waves: `wave_size` at once; rate: `rate` per second
    concurrency: int = 50
    wave_size: int = 200
    wave_gap: float = 0.5
    rate: float = 20.0
    slack_secret: str = ""
    twilio_token: str = ""
    twilio_sid: str = ""
    results: list[list[Any]] = field(default_factory=list)
    cpu_seconds: float = 0.0


def channel_of(i: int) -> str:
    return f"D{i:07d}"


def phone_of(i: int) -> str:
    return f"+1555{i:07d}"


def build(spec: Spec, i: int) -> tuple[str, bytes, dict[str, str]]:
    """The URL, body and headers of request ``i``, signed like the platform signs it."""
    url = spec.targets[i % len(spec.targets)]
    if spec.kind == "slack":
        ts = f"{1_700_000_000 + i}.000100"
        event = {"type": "message", "user": f"U{i:07d}", "text": f"hello {i}", "ts": ts,
                 "channel": channel_of(i), "channel_type": "im", "event_ts": ts}
        body = json.dumps({"token": "legacy", "team_id": TEAM, "api_app_id": "A0001", "event": event,
                           "type": "event_callback", "event_id": f"Ev{i:09d}", "event_time": int(time.time())}).encode()
        stamp = str(int(time.time()))
        signature = SignatureVerifier(spec.slack_secret).generate_signature(timestamp=stamp, body=body)
        return url, body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": str(signature),
                           "Content-Type": "application/json"}
    sid = f"SM{i:032d}"
    params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": spec.twilio_sid, "From": phone_of(i),
              "To": SMS_TO, "Body": f"hello {i}", "NumMedia": "0", "NumSegments": "1",
              "SmsStatus": "received", "ApiVersion": "2010-04-01"}
    signature = RequestValidator(spec.twilio_token).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
    return url, urlencode(params).encode(), headers


async def run(spec: Spec) -> None:
    built = {i: build(spec, i) for i in range(spec.first, spec.first + spec.count)}
    raw = {i: (url, serialize(url, body, headers)) for i, (url, body, headers) in built.items()}
    pool = _Pool()
    cpu = time.process_time()  # the sending only: not start-up, not signing

    async def send(i: int, conn: Connection | None = None) -> None:
        url, data = raw[i]
        own = conn or await pool.take(url)
        started = time.monotonic()
        try:
            status: int | str = await own.request(data)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            own.close()
            status = type(exc).__name__
        spec.results.append([i, started, time.monotonic() - started, status])
        if conn is None:
            pool.give(url, own)

    order = list(raw)
    if spec.mode == "burst":
        queue = iter(order)

        async def worker() -> None:
            conns: dict[str, Connection] = {}
            for i in queue:
                url = raw[i][0]
                if url not in conns:
                    conns[url] = Connection.to(url)
                    await conns[url].open()
                await send(i, conns[url])

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    elif spec.mode == "waves":
        for start in range(0, len(order), spec.wave_size):
            wave = order[start : start + spec.wave_size]
            # Connect first (Slack's senders keep theirs open): the wave measures the webhook's work.
            conns = [await pool.take(raw[i][0]) for i in wave]
            await asyncio.gather(*(c.open() for c in conns if c.fresh))
            await asyncio.gather(*(send(i, c) for i, c in zip(wave, conns, strict=True)))
            for i, c in zip(wave, conns, strict=True):
                pool.give(raw[i][0], c)
            await asyncio.sleep(spec.wave_gap)
    else:
        began = time.monotonic()
        tasks = []
        for n, i in enumerate(order):
            await asyncio.sleep(max(0.0, began + n / spec.rate - time.monotonic()))
            tasks.append(asyncio.create_task(send(i)))
        await asyncio.gather(*tasks)
    pool.close()
    spec.cpu_seconds = time.process_time() - cpu


class _Pool:
    """Idle keep-alive connections per URL; a new one when none is idle."""

    def __init__(self) -> None:
        self.idle: dict[str, list[Connection]] = {}

    async def take(self, url: str) -> Connection:
        idle = self.idle.get(url)
        return idle.pop() if idle else Connection.to(url)

    def give(self, url: str, conn: Connection) -> None:
        self.idle.setdefault(url, []).append(conn)

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()


def main() -> None:
    spec_path, out_path = sys.argv[1:3]
    with open(spec_path) as f:
        spec = Spec(**json.load(f))
    asyncio.run(run(spec))
    with open(out_path, "w") as f:
        json.dump({"results": spec.results, "cpu_seconds": spec.cpu_seconds}, f)


if __name__ == "__main__":
    main()
