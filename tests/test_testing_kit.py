"""The test kit's own promises: the gateway runs without it, and parallel workers never share state."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest_stores import worker_redis_url
from tests.stores.support import REPO


def test_the_gateway_imports_neither_the_test_kit_nor_pytest() -> None:
    """pytest is only in the ``testing``/``dev`` extras, so no runtime module may need it."""
    code = (
        "import sys, gateway.cli, gateway.app, gateway.demo, adapters.stores.memory, adapters.stores.redis,"
        " adapters.stores.sqlite, adapters.emulator\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest', 'switchboard')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


def test_each_xdist_worker_flushes_a_redis_database_of_its_own() -> None:
    assert worker_redis_url("redis://127.0.0.1:6379/15", None) == "redis://127.0.0.1:6379/15"
    assert worker_redis_url("redis://127.0.0.1:6379/15", "gw0") == "redis://127.0.0.1:6379/15"
    assert worker_redis_url("redis://127.0.0.1:6382/15", "gw3") == "redis://127.0.0.1:6382/12"
    with pytest.raises(RuntimeError, match="fewer workers"):
        worker_redis_url("redis://127.0.0.1:6379/15", "gw15")  # database 0 may serve a running gateway
