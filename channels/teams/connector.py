"""The Bot Connector REST API through the Agents SDK's ``ConnectorClient``, errors mapped once.

The SDK client raises ``aiohttp.ClientResponseError`` for any refusal; the core understands
``ChannelRateLimited`` (wait ``Retry-After``), ``ChannelError`` (retry with backoff) and
``ChannelPermanentError`` (give up). A 401 also drops the cached app token, so the retry fetches a
fresh one. One ``ConnectorClient`` (one HTTP session, its ``Authorization`` header set) is kept per
service URL; a renewed app token replaces the header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from microsoft_agents.activity import Activity, ConversationParameters, ResourceResponse
from microsoft_agents.hosting.core.connector.client import ConnectorClient

from channels.teams.auth import AppToken
from gateway.errors import ChannelError, ChannelPermanentError, ChannelRateLimited

T = TypeVar("T")


class MessageGone(ChannelPermanentError):
    """The activity to update or delete no longer exists."""


class StreamRefused(ChannelPermanentError):
    """Teams refused a streaming step (stream expired, ended, or streaming not allowed here)."""


class Connector:
    """Sends, updates and deletes activities; creates conversations (proactive desk threads)."""

    def __init__(self, token: AppToken) -> None:
        self._token = token
        self._clients: dict[str, tuple[str, ConnectorClient]] = {}

    async def close(self) -> None:
        for _, client in self._clients.values():
            await client.close()
        self._clients.clear()

    async def _client(self, service_url: str) -> ConnectorClient:
        token = await self._token.get()
        held = self._clients.get(service_url)
        if held is None:
            client = ConnectorClient(service_url, token)
        else:
            client = held[1]
            # AppToken hands out the same string object until it renews the token (identity, not a
            # comparison of secrets): requests in flight keep the old header, new ones use the new
            if held[0] is not token:
                client.client.headers["Authorization"] = f"Bearer {token}"
        self._clients[service_url] = (token, client)
        return client

    async def send(self, service_url: str, conversation_id: str, activity: dict[str, Any]) -> str:
        body = Activity.model_validate(activity)

        async def run(client: ConnectorClient) -> ResourceResponse:
            return await client.conversations.send_to_conversation(conversation_id, body)

        return str((await self._call(service_url, run)).id or "")

    async def update(self, service_url: str, conversation_id: str, activity_id: str, activity: dict[str, Any]) -> None:
        body = Activity.model_validate({**activity, "id": activity_id})

        async def run(client: ConnectorClient) -> ResourceResponse:
            return await client.conversations.update_activity(conversation_id, activity_id, body)

        await self._call(service_url, run)

    async def delete(self, service_url: str, conversation_id: str, activity_id: str) -> None:
        async def run(client: ConnectorClient) -> None:
            await client.conversations.delete_activity(conversation_id, activity_id)

        await self._call(service_url, run)

    async def create_conversation(self, service_url: str, parameters: dict[str, Any]) -> tuple[str, str]:
        """Start a conversation (a new channel thread); ``(conversation id, first activity id)``."""
        body = ConversationParameters.model_validate(parameters)

        async def run(client: ConnectorClient) -> Any:
            return await client.conversations.create_conversation(body)

        created = await self._call(service_url, run)
        return str(created.id or ""), str(created.activity_id or "")

    async def _call(self, service_url: str, run: Callable[[ConnectorClient], Awaitable[T]]) -> T:
        client = await self._client(service_url)
        try:
            return await run(client)
        except aiohttp.ClientResponseError as exc:
            raise self._error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelError(f"Bot Connector unavailable: {exc}") from exc

    def _error(self, exc: aiohttp.ClientResponseError) -> ChannelError:
        detail = f"Bot Connector answered {exc.status}: {str(exc.message)[:300]}"
        if exc.status == 429:
            return ChannelRateLimited(detail, _retry_after(exc))
        if exc.status == 401:
            self._token.forget()
            return ChannelError(detail)
        if exc.status == 404:
            return MessageGone(detail)
        if exc.status >= 500 or exc.status == 408:
            return ChannelError(detail)
        if "ContentStream" in str(exc.message):
            return StreamRefused(detail)
        return ChannelPermanentError(detail)


def _retry_after(exc: aiohttp.ClientResponseError) -> float:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0
