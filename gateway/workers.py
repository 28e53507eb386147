"""``switchboard serve --workers N``: N gateway processes on one port, sharing the store.

Each worker is an ordinary ``switchboard serve`` bound with ``SO_REUSEPORT``, so the kernel spreads
incoming connections over them and every core of the machine can answer webhooks and run turns.
They share nothing but the store, exactly like instances on several machines: the journal
deduplicates, per-conversation leases keep the order, and a worker that dies leaves its turns to
the others' sweepers. That holds for Redis only: the SQLite store assumes one process per file (it
voids leases when it opens), and the memory store is per process, so both refuse more than one.

The parent starts the workers, passes SIGTERM/SIGINT on (each finishes its turns within the
shutdown grace) and, should one worker exit, stops the others and exits with its status, so that
whatever supervises the gateway (systemd, Docker, Kubernetes) restarts it whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from types import FrameType

from gateway.config import Settings
from gateway.errors import ConfigError

SHARED_STORES = ("redis://", "rediss://", "unix://")
_PR_SET_PDEATHSIG = 1


def check_workers(settings: Settings, workers: int) -> None:
    """One readable line for a worker count the store cannot take."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if workers > 1 and not settings.gateway.store.startswith(SHARED_STORES):
        raise ConfigError(
            f"--workers {workers} needs a Redis store (gateway.store = \"redis://...\"): workers share "
            "the store, and SQLite and memory stores belong to a single process"
        )


def run_workers(config: str, workers: int) -> int:
    """Start ``workers`` processes of ``switchboard serve`` on the shared port; their exit status."""
    command = [sys.executable, "-m", "gateway", "serve", "--config", config, "--reuse-port"]
    # Their own process group: a signal to the parent's group (a terminal's ^C, ``kill -- -PGID``)
    # reaches them once, through ``forward``; a second SIGTERM would cut their graceful stop short.
    children = [subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)
                for _ in range(workers)]
    stopping: list[int] = []

    def forward(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        status = 0
        while True:
            exited = [c for c in children if c.poll() is not None]
            if exited:
                status = next((c.returncode for c in exited if c.returncode), 0)
                break
            time.sleep(0.2)
        if not stopping:
            # One worker stopped by itself: stop the others rather than serve on fewer.
            forward(signal.SIGTERM, None)
        for child in children:
            child.wait()
        return status if not stopping else 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _die_with_parent() -> None:
    """In each worker before it starts: killed with the parent (kill -9 of the parent leaves no
    worker behind serving the port). Linux only; elsewhere the workers outlive a killed parent."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

