"""Helpers for tests that need a real store: the shared test Redis and a private, killable one.

Import what you need (``from tests.conftest_stores import PrivateRedis``); pytest does not load
this module by itself, so it cannot clash with ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import redis


def worker_redis_url(base: str, worker: str | None) -> str:
    """The Redis test database of one pytest-xdist worker: ``gw0`` keeps ``base``'s, ``gwN`` the Nth below it.

    Each test flushes its database, so workers must never share one. Database 0 is left alone (a
    running gateway may use it): more workers than that leaves room for is a clear error.
    """
    if not worker:
        return base
    parts = urlsplit(base)
    db = int(parts.path.strip("/") or 0) - int(worker.removeprefix("gw"))
    if db < 1:
        raise RuntimeError(
            f"pytest-xdist worker {worker} has no Redis test database below {base!r}: run fewer workers (-n)"
            " or point SWITCHBOARD_TEST_REDIS at a higher database"
        )
    return urlunsplit(parts._replace(path=f"/{db}"))


#: the shared Redis every machine runs; database 15 is reserved for tests and flushed by them
#: (under pytest-xdist, worker gwN uses database 15 - N: see worker_redis_url).
#: SWITCHBOARD_TEST_REDIS points a run at another server, so two checkouts can test side by side.
REDIS_TEST_URL = worker_redis_url(
    os.environ.get("SWITCHBOARD_TEST_REDIS", "redis://127.0.0.1:6379/15"), os.environ.get("PYTEST_XDIST_WORKER")
)


def flush_test_redis() -> None:
    """Empty the test database (never the others: the shared Redis may serve a running gateway)."""
    with redis.Redis.from_url(REDIS_TEST_URL) as client:
        client.flushdb()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port that refuses connections for as long as the block runs (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class PrivateRedis:
    """A throw-away ``redis-server`` on a free port that a test may kill and restart.

    Never stop the shared Redis on 6379 in a test; stop this one instead::

        with PrivateRedis() as server:
            ...; server.stop(); ...; server.start()
    """

    def __init__(self, port: int | None = None, *, data_dir: str | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        #: with a directory, every write is in its append-only file before Redis answers, so a
        #: killed and restarted server comes back with everything it acknowledged (as in production)
        self.data_dir = data_dir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 5.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        durable = ["--appendonly", "yes", "--appendfsync", "always", "--dir", self.data_dir] if self.data_dir \
            else ["--appendonly", "no"]
        self._proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *durable],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"private redis-server on port {self.port} did not start") from None
                time.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP: Redis hangs (connections stay open, nothing answers), like a frozen host."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: a paused Redis answers again, with its data."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGKILL, like a crash: no goodbye to connected clients."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
