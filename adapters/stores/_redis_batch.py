"""Pipelined script calls for the Redis store: calls of concurrent callers share one round trip.

A burst of webhooks used to make one Lua call each, every one taking its own connection from a
pool that hands them out one waiter at a time, then a round trip of its own: the last webhooks of
a wave of 200 waited for all of that. Here every call is queued; one writer sends whatever is queued as one pipeline (an
``EVALSHA`` per call, in arrival order), and calls arriving meanwhile form the next one. No
``MULTI``: each script is atomic by itself, and Redis runs a connection's commands in the order
they were sent, so two calls on the same key behave as if made one after the other (the first to
arrive journals the event, the second finds it there).

Each caller gets its own reply: a script that fails (an error reply) fails only its caller. A
script Redis no longer knows (``NOSCRIPT``: restarted, ``SCRIPT FLUSH``) did not run; it is loaded
and those calls are sent again, still in order. A connection error or timeout fails every caller
of the pipeline, none of whom is told that its write happened (some may have: a retried webhook
then finds its event journaled, which is what a retry of one lost reply finds today). The pool's
one reconnect-and-resend after a connection error (meant for sockets gone stale across a Redis
restart) covers the whole pipeline, as it covered each single call.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

#: calls per pipeline at most (a huge backlog still gets answers now and then)
MAX_BATCH = 500


class _Call:
    __slots__ = ("args", "future", "keys", "script")

    def __init__(self, script: _Script, keys: Sequence[Any], args: Sequence[Any],
                 future: asyncio.Future[Any]) -> None:
        self.script, self.keys, self.args, self.future = script, keys, args, future


class _Script:
    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


class Pipeline:
    """Queued script calls of one client; a writer task sends each batch as one pipeline.

    Any number of scripts share it (:meth:`script`): under load the calls of many turns, whatever
    their scripts, go out together, one connection and one round trip for the lot instead of one
    pooled command each.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._encoder = client.connection_pool.get_encoder()
        self._queue: list[_Call] = []
        self._writer: asyncio.Task[None] | None = None
        #: how many pipelines and calls went through (for tests)
        self.pipelines = 0
        self.calls = 0

    def script(self, text: str) -> ScriptBatcher:
        """A callable for one Lua script, its calls sent through this pipeline."""
        return ScriptBatcher(self._client, text, self)

    async def call(self, script: _Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply for these keys and arguments, once the pipeline holding it answered."""
        # Encoded now, so that a value Redis cannot take (None, a dict) fails its own caller
        # here (DataError) instead of the whole pipeline when it is packed.
        encode = self._encoder.encode
        keys, args = [encode(k) for k in keys], [encode(a) for a in args]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(script, keys, args, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="redis-script-batch")
        return await future

    async def close(self) -> None:
        """Wait until every queued call was answered (before the connection pool closes)."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait([writer])

    async def _write(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                # A caller that gave up before its call was sent (its webhook timed out and got
                # a 503, which the platform retries) is not written at all.
                batch = [call for call in batch if not call.future.done()]
                if not batch:
                    continue
                try:
                    results = await self._send(batch)
                except asyncio.CancelledError:
                    self._fail([*batch, *self._queue], RedisConnectionError("the Redis batch writer was stopped"))
                    self._queue = []
                    raise
                except Exception as exc:  # connection lost, timeout: nobody may think it was written
                    results = [exc] * len(batch)
                for call, result in zip(batch, results, strict=True):
                    if call.future.done():
                        continue  # its caller gave up meanwhile (the script may have run all the same)
                    if isinstance(result, BaseException):
                        call.future.set_exception(result)
                    else:
                        call.future.set_result(result)
        finally:
            self._writer = None

    async def _send(self, batch: list[_Call]) -> list[Any]:
        """Every call's reply or error reply; raises when the pipeline as a whole failed."""
        results = await self._pipeline(batch)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            for text in {batch[i].script.text for i in missing}:
                await self._client.script_load(text)
            for i, result in zip(missing, await self._pipeline([batch[i] for i in missing]), strict=True):
                results[i] = result
        self.pipelines += 1
        self.calls += len(batch)
        return results

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for call in batch:
                pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
            return list(await pipe.execute(raise_on_error=False))

    @staticmethod
    def _fail(calls: list[_Call], exc: BaseException) -> None:
        for call in calls:
            if not call.future.done():
                call.future.set_exception(exc)


class ScriptBatcher:
    """One Lua script, called through :meth:`__call__`; its calls go through a :class:`Pipeline`
    (its own unless one is given)."""

    def __init__(self, client: aioredis.Redis, script: str, pipeline: Pipeline | None = None) -> None:
        self._script = _Script(script)
        self.pipeline = pipeline if pipeline is not None else Pipeline(client)

    @property
    def pipelines(self) -> int:
        return self.pipeline.pipelines

    @property
    def calls(self) -> int:
        return self.pipeline.calls

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return await self.pipeline.call(self._script, keys, args)

    async def close(self) -> None:
        await self.pipeline.close()
