"""The Channel base class as an async context manager: what a failed start opened is closed again."""

from __future__ import annotations

import pytest

from gateway.channel import Channel, ChannelSettings
from gateway.config import parse_settings
from gateway.errors import ChannelError
from gateway.services import OfflineServices


class Flaky(Channel[ChannelSettings]):
    """Opens a connection in initialize(), then fails, the way a refused token does."""

    type = "flaky"

    def __init__(self) -> None:
        super().__init__("flaky", ChannelSettings(type="flaky"), OfflineServices(parse_settings({}, env={})))
        self.open = False

    async def initialize(self) -> None:
        self.open = True
        raise ChannelError("the platform refused the token")

    async def shutdown(self) -> None:
        self.open = False

    def describe(self) -> str:
        return "a channel that cannot start"


async def test_a_failed_initialize_is_shut_down() -> None:
    channel = Flaky()
    with pytest.raises(ChannelError):
        async with channel:
            pass
    assert not channel.open
