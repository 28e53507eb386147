"""Child processes of a benchmark: start them, wait until they serve, sample their memory and CPU."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
READY = "READY "
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Child:
    """One process of the benchmark, in its own session so it can be stopped with its children."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, *, ready_line: bool, timeout: float = 30.0) -> None:
        """Start; with ``ready_line`` wait for ``READY {json}`` on stdout (kept in ``info``)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=subprocess.PIPE if ready_line else out, stderr=out, env=env,
                cwd=REPO, start_new_session=True,
            )
        if ready_line:
            assert self.proc.stdout is not None
            async with asyncio.timeout(timeout):
                while True:
                    line = (await self.proc.stdout.readline()).decode()
                    if not line:
                        raise RuntimeError(f"{self.name} exited before it was ready; see {self.log}")
                    if line.startswith(READY):
                        self.info = json.loads(line[len(READY):])
                        return

    async def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Wait until ``GET url`` answers 200 (the gateway's /healthz)."""
        async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
            while True:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"{self.name} exited (status {self.proc.returncode}); see {self.log}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)

    def rss_mb(self) -> float:
        return _status_kb(self.pid, "VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        return _status_kb(self.pid, "VmHWM") / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (from /proc/<pid>/stat)."""
        return cpu_seconds(self.pid)

    async def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    def log_lines(self, level: str) -> list[str]:
        """Lines of the child's log at ``level`` (e.g. ``ERROR``)."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text(errors="replace").splitlines() if f" {level} " in line]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its live child processes so far (from
    /proc/<pid>/stat; ``serve --workers N`` runs its workers as children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    total = (int(fields[11]) + int(fields[12])) / _TICKS
    for child in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            other = child.read_text().rpartition(")")[2].split()
            if int(other[1]) == pid:
                total += (int(other[11]) + int(other[12])) / _TICKS
    return total


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class Sampler:
    """Samples a process's RSS in the background while a block runs; ``peak`` in MB."""

    def __init__(self, child: Child, every: float = 0.1) -> None:
        self.child, self.every = child, every
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), self.child.rss_mb()))
            await asyncio.sleep(self.every)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Sampler]:
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def peak(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)


async def stop_all(children: Sequence[Child]) -> None:
    await asyncio.gather(*(c.stop() for c in reversed(children)), return_exceptions=True)
