"""Memory stays bounded under a flood of hostile requests (traced with tracemalloc).

A flood of refused or ignored requests must not leave anything behind: no per-request state
(rate-limit buckets, call state, dedup keys, log records) may grow with the number of requests.
The flood mixes unsigned and forged webhooks, malformed bodies, signed events the gateway
ignores, web chat requests it refuses and unauthorised admin calls, each one distinct.
``SWITCHBOARD_FUZZ_EXAMPLES`` scales the number of rounds.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Iterator
from urllib.parse import urlencode

from tests.fakes.meta import payload, text_item
from tests.fakes.slack_inbound import event_body, message
from tests.fakes.telegram import text_update
from tests.fakes.twilio import call_params, message_params
from tests.fuzz.live import LiveGateway, RawRequest
from tests.fuzz.strategies import PATHOLOGICAL, examples
from tests.fuzz.surfaces import WEBHOOKS, forged, sign_meta, sign_slack, sign_telegram, sign_twilio

ROUND = 120
#: what a steady flood may still add after the first round: allocator and interpreter noise
ALLOWANCE = 256 * 1024
JSON = [(b"Content-Type", b"application/json")]
FORM = [(b"Content-Type", b"application/x-www-form-urlencoded")]


def flood(port: int, start: int) -> Iterator[RawRequest]:
    """``ROUND`` distinct requests the gateway must refuse or ignore without keeping anything."""
    # Small malformed bodies; the repeated-fields SMS among them is a valid message when signed.
    small = [b for b in PATHOLOGICAL if len(b) < 20_000 and b"MessageSid=" not in b]
    n = start
    while True:
        for surface in WEBHOOKS:
            n += 1
            body = surface.valid(n)
            yield RawRequest("POST", surface.path, [(b"Content-Type", surface.content_type.encode())], body)
            wrong = forged(surface, port, surface.path, body, surface.valid(n + 1))
            yield RawRequest("POST", surface.path, [(b"Content-Type", surface.content_type.encode()), *wrong], body)
            bad = small[n % len(small)]
            yield RawRequest("POST", surface.path, surface.sign(port, surface.path, bad), bad)
        # Signed, well-formed, and ignored: a bot's own message, an edit, another product's object.
        body = event_body(message(f"bot {n}", bot_id="B1"), event_id=f"EvMem{n}")
        yield RawRequest("POST", "/webhooks/slack", [*JSON, *sign_slack(port, "", body)], body)
        body = json.dumps({"update_id": n, "edited_message": text_update("x")["message"]}).encode()
        yield RawRequest("POST", "/webhooks/tg", [*JSON, *sign_telegram(port, "", body)], body)
        body = payload([text_item(f"feed {n}")], obj="user")
        yield RawRequest("POST", "/webhooks/fb", [*JSON, *sign_meta(port, "", body)], body)
        body = urlencode({**message_params("", "+15551230001", "+15557654321", f"SMmem{n}"),
                          "MessageStatus": "delivered"}).encode()
        status_path = "/webhooks/sms/status"
        yield RawRequest("POST", status_path, [*FORM, *sign_twilio(port, status_path, body)], body)
        body = urlencode(call_params(f"CAmem{n:028d}", CallStatus="completed")).encode()
        yield RawRequest("POST", "/webhooks/phone", [*FORM, *sign_twilio(port, "/webhooks/phone", body)], body)
        # Web chat refused (foreign origin, bad session), admin without the token.
        chat = json.dumps({"sessionId": f"memory-session-{n}", "message": "hi"}).encode()
        yield RawRequest("POST", "/chat/web/messages", [*JSON, (b"Origin", b"https://evil.example")], chat)
        yield RawRequest("POST", "/chat/web/messages", JSON, json.dumps({"sessionId": f"bad {n}"}).encode())
        yield RawRequest("GET", f"/admin/identities?cursor={n}", [(b"Authorization", f"Bearer guess-{n}".encode())])


def test_memory_stays_bounded_under_a_flood_of_hostile_requests(live: LiveGateway) -> None:
    requests = flood(live.port, 0)
    rounds = max(4, examples(4 * ROUND) // ROUND)

    def one_round() -> None:
        for _ in range(ROUND):
            status = live.send(next(requests)).status
            assert 0 < status < 500
        live.idle()

    before = live.counts()
    one_round()  # warm-up: imports, caches, lazily created metric series, bounded LRU caches
    one_round()
    tracemalloc.start()
    try:
        one_round()
        gc.collect()
        after_first = tracemalloc.get_traced_memory()[0]
        for _ in range(rounds - 1):
            one_round()
        gc.collect()
        after_last = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    growth = after_last - after_first
    print(f"\ntraced memory after round 1: {after_first / 1024:.0f} KiB; after round {rounds}: "
          f"{after_last / 1024:.0f} KiB ({growth / 1024:+.0f} KiB over {(rounds - 1) * ROUND} requests)")
    assert growth < ALLOWANCE, f"{growth} bytes kept by {(rounds - 1) * ROUND} refused requests"
    assert live.problems() == []
    assert live.calls_since(before) == {}  # nothing in the flood was processed
