"""Fixtures of the Chatbase client tests: the emulator on a real port and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.chatbase import ChatbaseClient
from adapters.emulator import Emulator
from tests.chatbase.support import make_client


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


@pytest.fixture
async def base_url(emulator: Emulator) -> AsyncIterator[str]:
    async with emulator.serve() as url:
        yield url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s



@pytest.fixture
def client(session: aiohttp.ClientSession, base_url: str) -> ChatbaseClient:
    return make_client(session, base_url)

