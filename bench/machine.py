"""What the numbers were measured on: they are this machine's, not universal."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _version(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=5).stdout.strip()
    except OSError:
        return "not installed"


def _filesystem(path: Path) -> str:
    out = _version("df", "--output=fstype", str(path)).splitlines()
    return out[-1].strip() if len(out) > 1 else "unknown"


def describe(workdir: Path) -> dict[str, Any]:
    import aiohttp
    import redis

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(_memory_gb(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "redis_py": redis.__version__,
        "redis_server": _version("redis-server", "--version").split(" v=")[-1].split()[0] or "unknown",
        "sqlite": __import__("sqlite3").sqlite_version,
        "state_filesystem": _filesystem(workdir),
    }
