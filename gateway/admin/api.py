"""The admin HTTP API under ``/admin`` (see :mod:`gateway.admin.openapi` for the contract).

Every route checks ``Authorization: Bearer <gateway.admin_token>`` in constant time and answers
401 otherwise. Identities and conversations are addressed by opaque ids: the base64url of their
keys (keys hold ``|``, ``:`` and ``/``, which do not travel well in a URL path). Errors are JSON
``{"error": {"code", "message"}}``; nothing a client sends becomes a 500.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gateway.admin.openapi import document
from gateway.admin.people import People
from gateway.agents import Agents
from gateway.channel import Channel
from gateway.commands import Controls
from gateway.errors import AgentError, AgentNotFound, BadAgentRequest, StoreUnavailable
from gateway.linking import identity_from_key
from gateway.store import ConversationState, IdentityRecord, Store

Handler = Callable[[web.Request], Awaitable[web.Response]]
#: base64url without padding (a length of 1 modulo 4 is never valid base64)
ID_PATTERN = re.compile(r"(?:[A-Za-z0-9_-]{4}){0,511}(?:[A-Za-z0-9_-]{2,3})?")
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def encode_id(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_id(value: str, *, lenient: bool = False) -> str | None:
    """The key behind an id; None when it is not one (``lenient``: any bytes, for cursors)."""
    if not value or not ID_PATTERN.fullmatch(value):
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return raw.decode("utf-8", errors="replace" if lenient else "strict")
    except (binascii.Error, UnicodeDecodeError):
        return None


class AdminApi:
    """The admin operations of one started gateway (the routes find it under :data:`ADMIN`)."""

    def __init__(
        self, store: Store, agents: Agents, controls: Controls, channels: Mapping[str, Channel]
    ) -> None:
        self.store = store
        #: a conversation's messages come from the agent of its channel
        self.agents = agents
        self.channels = channels
        self.people = People(store, controls, channels)

    # -- platform rate limits --------------------------------------------------------------------
    async def waiting(self, request: web.Request) -> web.Response:
        """What waits for a platform rate limit in this instance now, oldest first, and why."""
        found = [w for channel in self.channels.values() for w in channel.pacer.waiting()]
        found.sort(key=lambda w: w.since)
        data = [{"channel": w.channel, "scope": w.scope, "scopeKind": w.kind, "what": w.what,
                 "reason": w.reason, "since": w.since, "until": w.until} for w in found]
        return web.json_response({"data": data})

    # -- identities ------------------------------------------------------------------------------
    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(document())

    async def list_identities(self, request: web.Request) -> web.Response:
        limit = _limit(request)
        cursor = request.query.get("cursor")
        after = None
        if cursor is not None:  # an empty one is malformed too (the schema says minLength 2)
            # A cursor is "after this key": any well-formed one means something, even a made-up one.
            after = decode_id(cursor, lenient=True)
            if after is None:
                raise ApiError(400, "INVALID_CURSOR", "The cursor is not one this API returned.")
        records = await self.store.list_identities(after, limit + 1)
        page = records[:limit]
        data = [await self._identity(r.identity_key, r) for r in page]
        more = len(records) > limit
        next_cursor = encode_id(page[-1].identity_key) if more and page else None
        return web.json_response({"data": data, "pagination": {"cursor": next_cursor, "hasMore": more}})

    async def get_identity(self, request: web.Request) -> web.Response:
        key = await self._known_identity(request)
        return web.json_response(await self._identity(key))

    async def forget(self, request: web.Request) -> web.Response:
        key = await self._known_identity(request)
        done = await self.people.forget(key)
        return web.json_response({
            "forgotten": done.identities,
            "conversations": sorted(set(done.conversations)),
            "agentConversations": sorted(set(done.agent_conversations)),
            "userIds": done.user_ids,
            "note": "Chatbase keeps its own copy of these conversations; delete them there as well.",
        })

    async def link(self, request: web.Request) -> web.Response:
        key = self._identity_key(request)
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "INVALID_BODY", 'Send JSON {"to": "<identity id>"}.') from None
        target = body.get("to") if isinstance(body, dict) else None
        to_key = decode_id(target) if isinstance(target, str) else None
        if to_key is None or identity_from_key(to_key) is None:
            raise ApiError(400, "INVALID_BODY", '"to" must be the id of an identity.')
        if to_key == key:
            raise ApiError(400, "INVALID_BODY", "An identity cannot be linked to itself.")
        if not await self.people.known(to_key):
            raise ApiError(404, "NOT_FOUND", "No such identity to link to.")
        await self.people.link(key, to_key)
        return web.json_response(await self._identity(key))

    async def unlink(self, request: web.Request) -> web.Response:
        key = self._identity_key(request)
        if not await self.people.unlink(key):
            raise ApiError(404, "NOT_FOUND", "This identity is not linked.")
        return web.json_response(await self._identity(key))

    # -- conversations ---------------------------------------------------------------------------
    async def get_conversation(self, request: web.Request) -> web.Response:
        key, state = await self._conversation(request)
        return web.json_response(await self.people.conversation(key, state=state))

    async def messages(self, request: web.Request) -> web.Response:
        limit = _limit(request)
        key, state = await self._conversation(request)
        if not state.conversation_id:
            return web.json_response({"data": [], "pagination": {"cursor": None, "hasMore": False}})
        try:
            page = await self.agents.for_conversation(key).list_messages(
                state.conversation_id, cursor=request.query.get("cursor") or None, limit=limit
            )
        except AgentNotFound:
            raise ApiError(404, "NOT_FOUND", "The agent no longer has this conversation.") from None
        except BadAgentRequest:
            raise ApiError(400, "INVALID_CURSOR", "The agent refused the request (a bad cursor?).") from None
        except AgentError as exc:
            raise ApiError(502, "AGENT_ERROR", f"The agent API failed: {exc.code or type(exc).__name__}") from None
        return web.json_response({"data": page.items, "pagination": {"cursor": page.cursor, "hasMore": page.has_more}})

    async def pause(self, request: web.Request) -> web.Response:
        return await self._set_paused(request, True)

    async def resume(self, request: web.Request) -> web.Response:
        return await self._set_paused(request, False)

    async def _set_paused(self, request: web.Request, paused: bool) -> web.Response:
        key, _ = await self._conversation(request)
        state = await self.people.set_paused(key, paused)
        return web.json_response(await self.people.conversation(key, state=state))

    # -- helpers ---------------------------------------------------------------------------------
    async def _identity(self, key: str, record: IdentityRecord | None = None) -> dict[str, Any]:
        described = await self.people.describe(key, record)
        described["sameUser"] = [{"id": encode_id(k), "key": k} for k in described["sameUser"]]
        for conversation in described["conversations"]:
            conversation["id"] = encode_id(conversation["key"])
        return {"id": encode_id(key), **described}

    def _identity_key(self, request: web.Request) -> str:
        key = decode_id(request.match_info["identity"])
        if key is None or identity_from_key(key) is None:
            raise ApiError(404, "NOT_FOUND", "No such identity.")
        return key

    async def _known_identity(self, request: web.Request) -> str:
        key = self._identity_key(request)
        if not await self.people.known(key):
            raise ApiError(404, "NOT_FOUND", "No such identity.")
        return key

    async def _conversation(self, request: web.Request) -> tuple[str, ConversationState]:
        key = decode_id(request.match_info["conversation"])
        state = await self.store.get_conversation(key) if key and ":" in key else None
        if key is None or state is None:
            raise ApiError(404, "NOT_FOUND", "No such conversation.")
        return key, state


ADMIN = web.AppKey("admin", AdminApi)
Operation = Callable[[AdminApi, web.Request], Awaitable[web.Response]]


def routes(token: str) -> list[web.RouteDef]:
    """The routes of the admin API, guarded by ``token``; each runs on the app's :data:`ADMIN`."""
    paged = ("limit", "cursor")
    return [
        web.get("/admin/openapi.json", _guard(token, AdminApi.openapi)),
        web.get("/admin/identities", _guard(token, AdminApi.list_identities, paged)),
        web.get("/admin/waiting", _guard(token, AdminApi.waiting)),
        web.get("/admin/identities/{identity}", _guard(token, AdminApi.get_identity)),
        web.delete("/admin/identities/{identity}", _guard(token, AdminApi.forget)),
        web.put("/admin/identities/{identity}/link", _guard(token, AdminApi.link)),
        web.delete("/admin/identities/{identity}/link", _guard(token, AdminApi.unlink)),
        web.get("/admin/conversations/{conversation}", _guard(token, AdminApi.get_conversation)),
        web.get("/admin/conversations/{conversation}/messages", _guard(token, AdminApi.messages, paged)),
        web.post("/admin/conversations/{conversation}/pause", _guard(token, AdminApi.pause)),
        web.post("/admin/conversations/{conversation}/resume", _guard(token, AdminApi.resume)),
    ]


def _guard(token: str, operation: Operation, query: tuple[str, ...] = ()) -> Handler:
    """Token check, then: unknown query parameters are mistakes, errors become JSON."""
    expected = _digest(token.encode())

    async def guarded(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        scheme, _, offered_text = given.partition(" ")
        # Headers that are not UTF-8 arrive with surrogates; they must compare unequal, not crash.
        offered = offered_text.strip().encode("utf-8", "surrogateescape")
        # compare_digest on equal-length inputs only leaks the length; hash both to hide that too.
        if scheme.lower() != "bearer" or not hmac.compare_digest(_digest(offered), expected):
            return _error(401, "UNAUTHORIZED", "A valid admin token is required.",
                          {"WWW-Authenticate": 'Bearer realm="switchboard-admin"'})
        unknown = sorted(set(request.query) - set(query))
        if unknown or any(len(request.query.getall(k, [])) > 1 for k in query):
            return _error(400, "INVALID_QUERY", f"Unknown or repeated query parameters: {unknown or query}")
        try:
            response = await operation(request.app[ADMIN], request)
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)
        except StoreUnavailable:
            return _error(503, "STORE_UNAVAILABLE", "The state store is unavailable.", {"Retry-After": "5"})
        response.headers["Cache-Control"] = "no-store"
        return response

    return guarded


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, "INVALID_LIMIT", f"limit must be an integer from 1 to {MAX_LIMIT}.")
    return int(raw)


def _digest(value: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(value).digest()


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response
