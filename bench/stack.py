"""The benchmark's processes, wired together: emulator, fake platforms, Redis, gateways, baseline, load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import redis

from bench.load import Spec
from bench.procs import Child, cpu_seconds, free_port, python, stop_all
from tests.conftest_stores import PrivateRedis
from tests.fakes.slack import SECRET

SLACK = "slack"
SMS = "sms"
#: a rate budget no scenario reaches (requests per 10 s), for those that measure the gateway itself
UNPACED = 10_000_000


def toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


class Stack:
    """Started once per benchmark run; each scenario resets what it uses."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.agent = Child("emulator", python("bench.agent"), workdir / "emulator.log")
        self.platform = Child("platform", python("bench.platform"), workdir / "platform.log")
        self.redis = PrivateRedis()
        self.http: aiohttp.ClientSession | None = None
        self._runs = 0
        self._ids = 0
        self.load_cpu = 0.0
        #: seconds to wait after the last answer for its trailing calls (set from the run's Params)
        self.trailing = 0.3

    def ids(self, count: int) -> int:
        """The first of ``count`` conversation numbers no earlier run used."""
        first, self._ids = self._ids, self._ids + count
        return first

    def spec(self, kind: str, targets: list[str], count: int, **mode: Any) -> Spec:
        """A load of ``count`` first messages of fresh conversations, signed for ``targets``."""
        p = self.platform.info
        return Spec(kind=kind, targets=targets, first=self.ids(count), count=count, slack_secret=SECRET,
                    twilio_token=p["twilio_token"], twilio_sid=p["twilio_sid"], **mode)

    async def __aenter__(self) -> Stack:
        self.redis.start()
        await asyncio.gather(self.agent.start(ready_line=True), self.platform.start(ready_line=True))
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()
        await stop_all([self.agent, self.platform])
        self.redis.stop()

    # -- controls ----------------------------------------------------------------------------------
    async def _json(self, method: str, url: str, body: Any = None) -> Any:
        assert self.http is not None
        async with self.http.request(method, url, json=body) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def reset(self, *, latency: float = 0.0, token_delay: float = 0.0,
                    rate_limit: dict[str, Any] | None = None) -> None:
        """Fresh emulator, fakes and Redis; then the agent's speed (and rate limit) for the next run.

        Unless ``rate_limit`` says otherwise the emulator allows (and its headers announce) far more
        than Chatbase's 100 per 10 s, so that scenarios about the gateway's own speed are not paced.
        """
        agent = self.agent.info["url"]
        await self._json("POST", agent + "/_emulator/reset")
        await self._json("POST", agent + "/_bench/reset")
        await self._json("POST", agent + "/_emulator/faults", {
            "latency": latency, "token_delay": token_delay,
            "rate_limit": rate_limit or {"enforced": False, "max": UNPACED, "window": 10},
        })
        await self._json("POST", self.platform.info["control"] + "/_bench/reset")
        with redis.Redis(port=self.redis.port) as client:
            client.flushall()  # our own private server: nothing else lives there

    async def done(self) -> int:
        return int((await self._json("GET", self.platform.info["control"] + "/_bench/done"))["done"])

    async def wait_done(self, count: int, timeout: float) -> float:
        """Wait until ``count`` answers were delivered complete; returns the time waited."""
        started = time.monotonic()
        deadline = started + timeout
        while await self.done() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {await self.done()} of {count} answers arrived in {timeout:.0f}s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(self.trailing)  # trailing calls (the final edit after a complete interim one)
        return time.monotonic() - started

    async def calls(self) -> dict[str, list[list[Any]]]:
        result: dict[str, list[list[Any]]] = await self._json("GET", self.platform.info["control"] + "/_bench/calls")
        return result

    async def emulator_state(self) -> dict[str, Any]:
        """The emulator's fault settings and rate-limit counts, and the API requests it received."""
        agent = self.agent.info["url"]
        faults = (await self._json("GET", agent + "/_emulator/faults"))["data"]
        requests = (await self._json("GET", agent + "/_emulator/requests"))["data"]
        return {"faults": faults, "requests": requests}

    async def tokens(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", self.agent.info["url"] + "/_bench/tokens")
        return result

    # -- systems under test ------------------------------------------------------------------------
    def store_url(self, store: str) -> str:
        if store == "redis":
            return self.redis.url
        self._runs += 1
        return f"sqlite:///{self.dir}/state-{self._runs}.db"

    @contextlib.asynccontextmanager
    async def gateways(
        self, store: str, *, instances: int = 1, agent: dict[str, Any] | None = None, **gateway: Any
    ) -> AsyncIterator[list[Child]]:
        """``instances`` ``switchboard serve`` processes sharing one store, each on its own port."""
        store_url = self.store_url(store)
        children = []
        for n in range(instances):
            port = free_port()
            self._runs += 1
            config = self.dir / f"gateway-{self._runs}.toml"
            config.write_text(toml(self._gateway_config(port, store_url, gateway, agent or {})))
            children.append(Child(f"gateway-{n + 1}", python("gateway", "serve", "--config", str(config)),
                                  config.with_suffix(".log")))
            children[-1].info["url"] = f"http://127.0.0.1:{port}"
        try:
            for child in children:
                await child.start(ready_line=False)
            await asyncio.gather(*(c.wait_http(c.info["url"] + "/healthz") for c in children))
            yield children
        finally:
            await stop_all(children)

    def _gateway_config(
        self, port: int, store_url: str, gateway: dict[str, Any], agent: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        p = self.platform.info
        slack = {k: gateway.pop(k) for k in list(gateway) if k.startswith("slack_")}
        return {
            "gateway": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}",
                        "store": store_url, **gateway},
            "agent": {"api_base": self.agent.info["api"], "api_key": "bench", "agent_id": "bench",
                      "rate_limit": f"{UNPACED}/10s", **agent},
            f"channels.{SLACK}": {"type": "slack", "bot_token": p["slack_token"], "signing_secret": SECRET,
                                  "api_base": p["slack"], **{k[6:]: v for k, v in slack.items()}},
            f"channels.{SMS}": {"type": "twilio-sms", "account_sid": p["twilio_sid"],
                                "auth_token": p["twilio_token"], "from": "+15550000000", "api_base": p["twilio"]},
        }

    @contextlib.asynccontextmanager
    async def baseline(self) -> AsyncIterator[Child]:
        port = free_port()
        p = self.platform.info
        config = {"port": port, "agent_api": self.agent.info["api"], "slack_api": p["slack"],
                  "slack_token": p["slack_token"], "slack_secret": SECRET, "twilio_api": p["twilio"],
                  "twilio_sid": p["twilio_sid"], "twilio_token": p["twilio_token"],
                  "public_url": f"http://127.0.0.1:{port}"}
        path = self.dir / "baseline.json"
        path.write_text(json.dumps(config))
        child = Child("baseline", python("bench.baseline", str(path)), self.dir / "baseline.log")
        try:
            await child.start(ready_line=True)
            child.info["url"] = f"http://127.0.0.1:{port}"
            yield child
        finally:
            await child.stop()

    async def load(self, spec: Spec) -> list[list[Any]]:
        """Run the load generator process on ``spec``; its per-request results."""
        self._runs += 1
        spec_path, out_path = self.dir / f"load-{self._runs}.json", self.dir / f"load-{self._runs}.out.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        child = Child("load", python("bench.load", str(spec_path), str(out_path)), self.dir / "load.log")
        await child.start(ready_line=False)
        assert child.proc is not None
        if await child.proc.wait() != 0:
            raise RuntimeError(f"the load generator failed; see {child.log}")
        out = json.loads(out_path.read_text())
        self.load_cpu = float(out["cpu_seconds"])
        results: list[list[Any]] = out["results"]
        return results

    def helper_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the processes every run shares (the load generator: its last run)."""
        assert self.redis._proc is not None
        return {"emulator": self.agent.cpu_seconds(), "fake APIs": self.platform.cpu_seconds(),
                "redis": cpu_seconds(self.redis._proc.pid), "load generator": self.load_cpu}
