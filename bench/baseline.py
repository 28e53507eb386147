"""``python -m bench.baseline CONFIG``: the bare minimum a bot needs, hand-written, as a yardstick.

Verify the platform signature, acknowledge, then in a background task call the agent (streaming)
and post the answer: one ``chat.postMessage`` for Slack, one Messages request for Twilio. No
journal, no deduplication, no ordering, no retries, no placeholder, no formatting: whatever it
loses in a crash is lost. CONFIG is a JSON file: ``port``, ``agent_api``, ``slack_api``,
``slack_token``, ``slack_secret``, ``twilio_api``, ``twilio_sid``, ``twilio_token``, ``public_url``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import signal
import sys
import time
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from bench.procs import READY


class Baseline:
    def __init__(self, config: dict[str, Any], http: aiohttp.ClientSession) -> None:
        self.c = config
        self.http = http
        self.conversations: dict[str, str] = {}  # scope → Chatbase conversation id, in memory only
        self.tasks: set[asyncio.Task[None]] = set()
        self.failures = 0
        self.validator = RequestValidator(config["twilio_token"])
        sid_token = f"{config['twilio_sid']}:{config['twilio_token']}".encode()
        self.twilio_auth = {"Authorization": "Basic " + base64.b64encode(sid_token).decode()}

    def spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures += 1

    async def ask(self, scope: str, user: str, text: str) -> str:
        """One streamed answer from the agent, its text deltas joined."""
        body: dict[str, Any] = {"message": text, "stream": True, "userId": user}
        if scope in self.conversations:
            body["conversationId"] = self.conversations[scope]
        answer = []
        url = f"{self.c['agent_api']}/agents/bench/chat"
        async with self.http.post(url, json=body, headers={"Authorization": "Bearer bench"}) as resp:
            resp.raise_for_status()
            async for line in resp.content:
                if not line.startswith(b"data: {"):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "text-delta":
                    answer.append(event["delta"])
                elif event["type"] == "finish":
                    self.conversations[scope] = event["messageMetadata"]["conversationId"]
        return "".join(answer)

    async def slack(self, request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers.get("X-Slack-Request-Timestamp", "0")
        base = b"v0:" + stamp.encode() + b":" + raw
        expected = "v0=" + hmac.new(self.c["slack_secret"].encode(), base, hashlib.sha256).hexdigest()
        if abs(time.time() - int(stamp)) > 300 or not hmac.compare_digest(
            expected.encode(), request.headers.get("X-Slack-Signature", "").encode()
        ):
            return web.Response(status=401)
        envelope = json.loads(raw)
        event = envelope.get("event", {})
        if envelope.get("type") == "event_callback" and event.get("type") == "message" and "bot_id" not in event:
            self.spawn(self.answer_slack(event))
        return web.Response()

    async def answer_slack(self, event: dict[str, Any]) -> None:
        text = await self.ask(event["channel"], f"slack.{event['user']}", event["text"])
        url = self.c["slack_api"] + "chat.postMessage"
        headers = {"Authorization": f"Bearer {self.c['slack_token']}"}
        async with self.http.post(url, json={"channel": event["channel"], "text": text}, headers=headers) as resp:
            if not (await resp.json())["ok"]:
                raise RuntimeError("chat.postMessage failed")

    async def twilio(self, request: web.Request) -> web.Response:
        raw = await request.read()
        form = dict(parse_qsl(raw.decode()))
        url = self.c["public_url"] + request.path_qs
        if not self.validator.validate(url, form, request.headers.get("X-Twilio-Signature", "")):
            return web.Response(status=403)
        self.spawn(self.answer_twilio(form))
        return web.Response(text="<Response/>", content_type="text/xml")

    async def answer_twilio(self, form: dict[str, str]) -> None:
        text = await self.ask(form["From"], "sms." + form["From"].lstrip("+"), form["Body"])
        url = f"{self.c['twilio_api']}/2010-04-01/Accounts/{self.c['twilio_sid']}/Messages.json"
        data = {"To": form["From"], "From": form["To"], "Body": text[:1600]}
        async with self.http.post(url, data=data, headers=self.twilio_auth) as resp:
            resp.raise_for_status()

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "failures": self.failures})


async def main(config: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as http:
        baseline = Baseline(config, http)
        app = web.Application()
        app.router.add_post("/webhooks/slack", baseline.slack)
        app.router.add_post("/webhooks/sms", baseline.twilio)
        app.router.add_get("/healthz", baseline.health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", config["port"]).start()
        print(READY + json.dumps({"url": f"http://127.0.0.1:{config['port']}"}), flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f)))
