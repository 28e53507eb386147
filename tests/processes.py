"""Gateways and Redis servers as real processes, for crash and multi-instance tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import PLUGINS_DIR
from tests.conftest_stores import PrivateRedis

__all__ = ["GatewayProcess", "PrivateRedis", "write_config"]


def toml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write nested ``{"gateway": {...}, "channels.echo": {...}}`` sections as TOML."""
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class GatewayProcess:
    """``switchboard serve`` in its own session, killable with SIGKILL like a crash."""

    config: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    #: more ``serve`` arguments, e.g. ("--workers", "2")
    args: tuple[str, ...] = ()
    proc: asyncio.subprocess.Process | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": PLUGINS_DIR, **self.env}
        self.log = self.config.with_suffix(f".{self.port}.log")
        out = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(self.config), *self.args,
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.config.parent, start_new_session=True,
        )
        out.close()
        await self.wait_ready()

    async def wait_ready(self, timeout: float = 20) -> None:
        import aiohttp

        async with asyncio.timeout(timeout), aiohttp.ClientSession() as s:
            while True:
                assert self.proc is not None and self.proc.returncode is None, self.read_log()
                try:
                    async with s.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    def read_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    async def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup runs, as in a crash."""
        if self.proc and self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()
