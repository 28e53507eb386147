"""HTTP, retries and error mapping for the Chatbase client, in one place.

Failure policy, applied to every call:

* HTTP errors are mapped once, by the API's error ``code`` (:mod:`adapters.chatbase.errors`);
  transport errors and timeouts become :class:`~gateway.errors.AgentUnavailable`.
* 429 waits ``Retry-After`` (when it is at most ``max_retry_after``) and tries again; 5xx,
  network errors and timeouts back off exponentially with jitter; both stop after
  ``settings.max_attempts`` attempts. Other 4xx are never retried.
* A stream is retried only while nothing has been yielded from it; once events flowed, a break
  raises :class:`~gateway.errors.StreamBroken` carrying the text received so far.
* With a :class:`~gateway.budget.Budget`, every request (not health) first takes a token from
  the API key's shared budget, and every response's rate-limit headers are fed back to it; a 429
  is then retried as soon as the budget allows (the budget honours its ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import aiohttp

from adapters.chatbase import documents
from adapters.chatbase.errors import error_from_response, retry_after_seconds
from adapters.chatbase.sse import SSEDecoder
from gateway.agent import AgentEvent
from gateway.budget import Budget, Observation
from gateway.config import AgentSettings
from gateway.errors import AgentError, AgentRateLimited, AgentUnavailable, StreamBroken

log = logging.getLogger("adapters.chatbase.client")

_MAX_ERROR_BODY = 64 * 1024
#: seconds the end of a stream's body may take after [DONE] and still keep the connection
_TAIL_WAIT = 0.05
_USER_AGENT = "switchboard-chatbase-client/1"
_T = TypeVar("_T")


class _Progress:
    """Whether a stream attempt has yielded anything: after that it must not be retried."""

    yielded = False


class Transport:
    """Authenticated JSON calls and SSE streams against ``settings.api_base``, with retries."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: AgentSettings,
        *,
        backoff_base: float,
        backoff_cap: float,
        max_retry_after: float,
        budget: Budget | None = None,
    ) -> None:
        self._budget = budget
        self._session = session
        self._settings = settings
        self._base = settings.api_base.rstrip("/")
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_retry_after = max_retry_after
        # sock_read bounds the wait for the first byte and every gap between stream chunks.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.timeout, sock_read=settings.timeout)

    async def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One JSON request (retried per the policy); returns the decoded body or None."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._call_once(method, path, what, json_body, params)
            except AgentError as exc:
                await self._wait(exc, attempt, what)

    async def stream(self, path: str, body: dict[str, Any], what: str) -> AsyncIterator[AgentEvent]:
        """POST ``body`` and yield the answer's events (retried only before the first event)."""
        attempt = 0
        while True:
            attempt += 1
            progress = _Progress()
            try:
                async for event in self._stream_once(path, body, what, progress):
                    yield event
                return
            except AgentError as exc:
                if progress.yielded:
                    raise  # already a StreamBroken with the partial text
                await self._wait(exc, attempt, what)

    async def health(self) -> bool:
        """True when ``GET /health`` answers 200 with status ok; never raises, never retries."""
        try:
            async with self._session.get(
                self._base + "/health", timeout=self._timeout, headers={"User-Agent": _USER_AGENT}
            ) as resp:
                if resp.status != 200:
                    return False
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return not isinstance(doc, dict) or doc.get("status", "ok") == "ok"

    def _headers(self, accept: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._settings.api_key}",
            "Accept": accept,
            "User-Agent": _USER_AGENT,
        }

    def retry_delay(self, exc: AgentError, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when ``exc`` must be raised."""
        if attempt >= self._settings.max_attempts:
            return None
        if isinstance(exc, AgentRateLimited):
            if exc.retry_after > self._max_retry_after:
                return None
            return 0.0 if self._budget is not None else exc.retry_after  # the budget waits for it
        if isinstance(exc, AgentUnavailable):
            ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
            return ceiling / 2 + random.uniform(0, ceiling / 2)
        return None

    async def _wait(self, exc: AgentError, attempt: int, what: str) -> None:
        delay = self.retry_delay(exc, attempt)
        if delay is None:
            raise exc
        log.warning(
            "Chatbase %s attempt %d/%d failed (%s); retrying in %.2fs",
            what, attempt, self._settings.max_attempts, exc, delay,
        )  # fmt: skip
        await asyncio.sleep(delay)

    async def _call_once(self, method: str, path: str, what: str, json_body: Any, params: dict[str, str] | None) -> Any:
        ticket = await self._budget.acquire() if self._budget is not None else 0
        try:
            async with self._session.request(
                method,
                self._base + path,
                json=json_body,
                params=params,
                headers=self._headers("application/json"),
                timeout=self._timeout,
            ) as resp:
                await self._observe(ticket, resp)
                await _raise_for_status(resp, what)
                body = await resp.read()
                request_id = resp.headers.get("x-request-id")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AgentUnavailable(f"Chatbase {what} failed: {_describe(exc)}") from exc
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise AgentUnavailable(
                f"Chatbase {what} answered with a body that is not JSON", request_id=request_id
            ) from exc

    async def _stream_once(
        self, path: str, body: dict[str, Any], what: str, progress: _Progress
    ) -> AsyncIterator[AgentEvent]:
        decoder = SSEDecoder()
        ticket = await self._budget.acquire() if self._budget is not None else 0
        try:
            async with self._session.post(
                self._base + path,
                json=body,
                headers=self._headers("text/event-stream"),
                timeout=self._timeout,
            ) as resp:
                await self._observe(ticket, resp)
                await _raise_for_status(resp, what)
                if resp.content_type == "application/json":
                    # A server (or proxy) that ignored stream=true: same events, all at once.
                    doc = json.loads(await resp.read())
                    for event in parse(documents.chat_events, doc, what):
                        progress.yielded = True
                        yield event
                    return
                async for chunk in resp.content.iter_any():
                    for event in decoder.feed(chunk):
                        progress.yielded = True
                        yield event
                    if decoder.done:
                        await _read_tail(resp)
                        break
                for event in decoder.close():
                    progress.yielded = True
                    yield event
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if decoder.complete:
                # The finish had arrived; a connection that then stalls or drops lost nothing.
                log.debug("Chatbase %s stream ended untidily after finish: %s", what, _describe(exc))
                for event in decoder.close():
                    yield event
                return
            if progress.yielded:
                raise StreamBroken(
                    f"Chatbase {what} stream broke: {_describe(exc)}", partial_text=decoder.text
                ) from exc
            raise AgentUnavailable(f"Chatbase {what} failed: {_describe(exc)}") from exc
        if not decoder.complete:
            raise StreamBroken(f"Chatbase {what} stream ended without finish", partial_text=decoder.text)


    async def _observe(self, ticket: int, resp: aiohttp.ClientResponse) -> None:
        if self._budget is not None:
            await self._budget.observe(rate_observation(ticket, resp.status, resp.headers))


async def _read_tail(resp: aiohttp.ClientResponse) -> None:
    """Nothing after [DONE] matters, but the end of the body usually follows at once: reading it
    lets aiohttp keep the connection for the next call (a new TCP connection per answer cost the
    gateway about a tenth of its CPU in the throughput benchmark). A server that keeps the
    stream open is not waited for."""
    if resp.content.at_eof():
        return
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(_TAIL_WAIT):
            await resp.content.read()


def rate_observation(ticket: int, status: int, headers: Mapping[str, str]) -> Observation:
    """The rate-limit headers of a response (``X-RateLimit-Reset`` is Unix milliseconds)."""
    remaining = _number(headers.get("X-RateLimit-Remaining"))
    reset = _number(headers.get("X-RateLimit-Reset"))
    if reset is not None:
        # Documented as Unix milliseconds; tolerate Unix seconds and seconds-from-now.
        reset = reset / 1000 if reset > 1e11 else reset if reset > 1e9 else time.time() + reset
    return Observation(
        ticket,
        remaining=None if remaining is None else max(0, int(remaining)),
        reset_at=reset,
        retry_after=retry_after_seconds(headers) if status == 429 else None,
    )


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse(parser: Callable[[Any], _T], doc: Any, what: str) -> _T:
    """Apply a document parser; a document of the wrong shape is a server fault."""
    try:
        return parser(doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentUnavailable(f"Chatbase {what} answered with an unexpected document") from exc


async def _raise_for_status(resp: aiohttp.ClientResponse, what: str) -> None:
    if resp.status < 400:
        return
    body = await resp.content.read(_MAX_ERROR_BODY)
    # The HTTP failure itself is the cause; it keeps the URL and status for tracebacks.
    cause = aiohttp.ClientResponseError(
        resp.request_info, resp.history, status=resp.status, message=resp.reason or "", headers=resp.headers
    )
    raise error_from_response(resp.status, body, resp.headers, what=what) from cause


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
