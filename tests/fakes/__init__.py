"""Fake platform APIs for the tests, and what they share."""

from __future__ import annotations

import time


class Refusals:
    """Conversations a fake platform refuses with 429 and ``Retry-After`` for a while (issue 17).

    ``refuse(who, seconds, retry_after)``: every call concerning ``who`` (a Slack channel, a
    Telegram chat id, a Twilio ``To``) is answered 429 asking to wait ``retry_after`` seconds, until
    ``seconds`` from now; ``count[who]`` says how many calls were refused.
    """

    def __init__(self) -> None:
        self._until: dict[str, tuple[float, float]] = {}
        self.count: dict[str, int] = {}

    def refuse(self, who: str, seconds: float, retry_after: float = 5.0) -> None:
        self._until[str(who)] = (time.monotonic() + seconds, retry_after)

    def check(self, who: object) -> float | None:
        """The ``Retry-After`` to answer a call concerning ``who`` with, or None to serve it."""
        key = str(who)
        refusal = self._until.get(key)
        if refusal is None or time.monotonic() >= refusal[0]:
            return None
        self.count[key] = self.count.get(key, 0) + 1
        return refusal[1]
