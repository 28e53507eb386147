"""Fixtures of the emulator tests: a fresh emulator on a real port, and a raw client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.emulator import Emulator
from tests.emulator.support import Api


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


@pytest.fixture
async def api(emulator: Emulator) -> AsyncIterator[Api]:
    async with emulator.serve() as url, aiohttp.ClientSession() as session:
        assert emulator.base_url == url
        yield Api(session, url)
    assert emulator.base_url is None
