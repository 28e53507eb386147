"""One live gateway per fuzz module (starting one takes longer than a hundred examples)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.live import LiveGateway


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every fuzz test is slow (a live gateway and hundreds of examples): ``-m "not slow"`` skips them."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveGateway]:
    with LiveGateway() as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def _fresh_baseline(live: LiveGateway) -> None:
    """Each test judges only the calls and log records its own requests caused."""
    live.idle(60)
    live.reset_baseline()
