"""Shared test setup: the network outside this machine is unreachable by construction."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_LOCAL = {"localhost", "127.0.0.1", "::1", "0.0.0.0", None}
_real_getaddrinfo = socket.getaddrinfo


def _local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOCAL and not str(name).startswith("127."):
        raise OSError(f"tests never touch the internet (tried to resolve {name!r})")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _offline() -> Iterator[None]:
    socket.getaddrinfo = _local_only
    yield
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """``switchboard check`` and the log tests install a root handler on the test's captured
    stderr; left behind, it outlives that stream, and the next library that logs from another
    thread (aiosmtpd's server) prints "--- Logging error ---" tracebacks into the run."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


PLUGINS_DIR = str(__import__("pathlib").Path(__file__).parent / "plugins")


@pytest.fixture
def echo_plugin() -> Iterator[Any]:
    """Put the out-of-tree ``sb-echo`` distribution on sys.path, as if pip-installed."""
    import importlib
    import sys

    sys.path.insert(0, PLUGINS_DIR)
    importlib.invalidate_caches()
    module = importlib.import_module("sb_echo")
    module.SENT.clear()
    yield module
    sys.path.remove(PLUGINS_DIR)
    importlib.invalidate_caches()
