"""One live gateway per fuzz module (starting one takes longer than a hundred examples)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.live import LiveGateway


@pytest.fixture(scope="module")
def live() -> Iterator[LiveGateway]:
    with LiveGateway() as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _fresh_baseline(live: LiveGateway) -> None:
    """Each test judges only the calls and log records its own requests caused."""
    live.idle(60)
    live.reset_baseline()
