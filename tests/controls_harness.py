"""``running_gateway`` with extra top-level config sections ([commands], [linking], [handoff], [logging]).

The shared harness takes only gateway/agent/channels/tools; these tests need the conversation
control sections too, so the settings it builds are re-validated with them added.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from gateway.config import Settings, parse_settings
from tests import harness
from tests.harness import GatewayUnderTest


@asynccontextmanager
async def controlled_gateway(
    channels: Mapping[str, Mapping[str, Any]], sections: Mapping[str, Any] | None = None, **kw: Any
) -> AsyncIterator[GatewayUnderTest]:
    """A started gateway (see :func:`tests.harness.running_gateway`) with ``sections`` in its config."""
    original = harness.make_settings

    def make(*args: Any, **kwargs: Any) -> Settings:
        base = original(*args, **kwargs).model_dump()
        return parse_settings({**base, **(sections or {})}, env={})

    harness.make_settings = make  # type: ignore[assignment]
    try:
        async with harness.running_gateway(channels, **kw) as gw:
            harness.make_settings = original
            yield gw
    finally:
        harness.make_settings = original
