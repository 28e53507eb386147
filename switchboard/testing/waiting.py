"""Waiting for a condition instead of for a fixed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(predicate: Callable[[], object], what: str = "the condition", timeout: float = 15.0) -> None:
    """Poll ``predicate`` until it is true; fail the test naming ``what`` after ``timeout`` seconds.

    The timeout only bounds a broken run: a passing test waits exactly as long as the thing takes.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)
