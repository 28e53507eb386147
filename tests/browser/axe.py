"""axe-core for accessibility scans: a test-only npm package, installed once into a cache folder.

``scripts/ci-deps.d/web.sh`` installs it on CI; a developer machine gets it on first use here.
Only npm (the public registry) is asked; nothing else is downloaded.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

AXE_VERSION = "4.14.1"
CACHE = Path(os.environ.get("SWITCHBOARD_AXE_DIR", Path.home() / ".cache" / "switchboard-tests" / "axe"))
#: violations at these impacts fail a scan
SERIOUS = ("serious", "critical")


def axe_source() -> str:
    """The text of ``axe.min.js`` (pinned version), installing it with npm if needed."""
    script = CACHE / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("the accessibility tests need npm (Debian package `npm`) to install axe-core")
        CACHE.mkdir(parents=True, exist_ok=True)
        # pytest-xdist workers may all get here at once: one installs, the others wait for it.
        with open(CACHE / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not script.exists():
                subprocess.run(
                    [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(CACHE),
                     f"axe-core@{AXE_VERSION}"],
                    check=True, capture_output=True, timeout=300,
                )
    return script.read_text(encoding="utf-8")


async def serious_violations(frame: Any, source: str, include: str | None = None) -> list[str]:
    """Serious or critical axe violations in ``frame`` (a Playwright page or frame), as readable lines.

    The script is evaluated through the DevTools protocol, which the page's CSP does not govern.
    """
    if not await frame.evaluate("typeof window.axe !== 'undefined'"):
        await frame.evaluate(source)
    results = await frame.evaluate(
        """async (include) => {
            const context = include ? { include: [include] } : document;
            const r = await axe.run(context, { iframes: false, resultTypes: ["violations"] });
            return r.violations.map(v => ({ id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(" ")) }));
        }""",
        include,
    )
    return [f"{v['id']} ({v['impact']}): {', '.join(v['nodes'])}" for v in results if v["impact"] in SERIOUS]
