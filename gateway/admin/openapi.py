"""The admin API's OpenAPI 3.0 document, served at ``/admin/openapi.json`` and fuzzed in the tests."""

from __future__ import annotations

from typing import Any

from gateway import __version__

#: base64url of a key, without padding (see ``gateway.admin.api.ID_PATTERN``)
_ID = {"type": "string", "pattern": "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$", "minLength": 2,
       "maxLength": 2048}
_NULLABLE_NUMBER = {"type": "number", "nullable": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {400: "Invalid request", 401: "Missing or wrong admin token", 404: "Not found",
             502: "The agent API failed", 503: "The state store is unavailable"}
    found = {str(s): _json(_ref("Error"), texts[s]) for s in (*statuses, 400, 401, 503)}
    # A request the HTTP parser itself refuses (an over-long URL) gets its plain-text 400.
    found["400"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    return found


def _param(name: str, where: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


_LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                "Page size")
_CURSOR = _param("cursor", "query", _ID, "The cursor of the previous page")
_AGENT_CURSOR = _param("cursor", "query", {"type": "string", "minLength": 1},
                       "The agent API's cursor of the previous page (opaque; passed on as it is)")
_IDENTITY = _param("identityId", "path", _ID, "An identity id, as listed")
_CONVERSATION = _param("conversationId", "path", _ID, "A conversation id, as listed")

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
    },
    "Pagination": {
        "type": "object", "required": ["cursor", "hasMore"],
        "properties": {"cursor": {"type": "string", "nullable": True}, "hasMore": {"type": "boolean"}},
    },
    "Conversation": {
        "type": "object",
        "required": ["key", "channel", "scope", "conversationId", "userId", "paused", "handoff", "updatedAt",
                     "lastSeen"],
        "properties": {
            "id": {"type": "string"},
            "key": {"type": "string", "description": "<channel name>:<scope>"},
            "channel": {"type": "string"},
            "agent": {"type": "string", "description": "the agent the channel talks to ([agent] is \"default\")"},
            "scope": {"type": "string"},
            "conversationId": {"type": "string", "nullable": True, "description": "the Chatbase conversation"},
            "userId": {"type": "string", "nullable": True},
            "paused": {"type": "boolean", "description": "the agent does not answer (handoff or operator)"},
            "handoff": {"type": "boolean", "description": "a person from the team has it (human handoff)"},
            "updatedAt": _NULLABLE_NUMBER,
            "lastSeen": _NULLABLE_NUMBER,
        },
    },
    "IdentityRef": {
        "type": "object", "required": ["id", "key"],
        "properties": {"id": {"type": "string"}, "key": {"type": "string"}},
    },
    "Identity": {
        "type": "object",
        "required": ["id", "key", "channelType", "namespace", "externalId", "userId", "linked", "sameUser",
                     "firstSeen", "lastSeen", "conversations"],
        "properties": {
            "id": {"type": "string"},
            "key": {"type": "string", "description": "<channel type>|<namespace>|<id>"},
            "channelType": {"type": "string"},
            "namespace": {"type": "string"},
            "externalId": {"type": "string"},
            "userId": {"type": "string", "description": "the Chatbase userId the agent knows them by"},
            "linked": {"type": "boolean"},
            "sameUser": {"type": "array", "items": _ref("IdentityRef"),
                         "description": "other identities sharing this userId"},
            "firstSeen": _NULLABLE_NUMBER,
            "lastSeen": _NULLABLE_NUMBER,
            "conversations": {"type": "array", "items": _ref("Conversation")},
        },
    },
    "IdentityPage": {
        "type": "object", "required": ["data", "pagination"],
        "properties": {"data": {"type": "array", "items": _ref("Identity")}, "pagination": _ref("Pagination")},
    },
    "MessagePage": {
        "type": "object", "required": ["data", "pagination"],
        "properties": {"data": {"type": "array", "items": {"type": "object"}}, "pagination": _ref("Pagination")},
    },
    "Forgotten": {
        "type": "object", "required": ["forgotten", "conversations", "agentConversations", "userIds", "note"],
        "properties": {
            "forgotten": {"type": "array", "items": {"type": "string"}},
            "conversations": {"type": "array", "items": {"type": "string"}},
            "agentConversations": {"type": "array", "items": {"type": "string"},
                                   "description": "Chatbase conversation ids to delete at Chatbase too"},
            "userIds": {"type": "array", "items": {"type": "string"}},
            "note": {"type": "string"},
        },
    },
    "Waiting": {
        "type": "object", "required": ["channel", "scope", "scopeKind", "what", "reason", "since", "until"],
        "properties": {
            "channel": {"type": "string", "description": "the channel's name"},
            "scope": {"type": "string", "description": "<kind>:<key> of the limit, e.g. chat:4242, channel:D01"},
            "scopeKind": {"type": "string", "description": "chat, channel, method, group, bot, account, recipient, "
                                                           "conversation..."},
            "what": {"type": "string", "description": "the journal entry, conversation or chat that waits"},
            "reason": {"type": "string", "description": "a 429 and its Retry-After, or the pacing rate"},
            "since": {"type": "number", "description": "Unix time the wait began"},
            "until": {**_NULLABLE_NUMBER, "description": "Unix time it is expected to end"},
        },
    },
    "WaitingList": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "array", "items": _ref("Waiting")}},
    },
    "LinkRequest": {
        "type": "object", "required": ["to"], "additionalProperties": False,
        "properties": {"to": {**_ID, "description": "the identity whose userId this one should share"}},
    },
}


def _op(summary: str, responses: dict[str, Any], *params: dict[str, Any], body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": list(params), "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    identity = _json(_ref("Identity"), "The identity")
    conversation = _json(_ref("Conversation"), "The conversation")
    return {
        "openapi": "3.0.3",
        "info": {"title": "Switchboard admin API", "version": __version__,
                 "description": "People, links, conversations and privacy requests of one Switchboard gateway."},
        "security": [{"bearerAuth": []}],
        "paths": {
            "/admin/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI"),
                                                                 **_errors()})},
            "/admin/identities": {"get": _op(
                "List identities in key order", {"200": _json(_ref("IdentityPage"), "A page"), **_errors(400)},
                _LIMIT, _CURSOR)},
            "/admin/waiting": {"get": _op(
                "What waits for a platform rate limit in this instance now, and why (oldest first)",
                {"200": _json(_ref("WaitingList"), "The waits"), **_errors()})},
            "/admin/identities/{identityId}": {
                "get": _op("One identity, its userId and conversations", {"200": identity, **_errors(404)},
                           _IDENTITY),
                "delete": _op("Forget the person: this identity and every identity sharing its userId",
                              {"200": _json(_ref("Forgotten"), "What was removed"), **_errors(404)}, _IDENTITY),
            },
            "/admin/identities/{identityId}/link": {
                "put": _op("Link: this identity shares the userId of `to`", {"200": identity, **_errors(400, 404)},
                           _IDENTITY, body="LinkRequest"),
                "delete": _op("Unlink: this identity gets its own userId back", {"200": identity, **_errors(404)},
                              _IDENTITY),
            },
            "/admin/conversations/{conversationId}": {
                "get": _op("One conversation", {"200": conversation, **_errors(404)}, _CONVERSATION)},
            "/admin/conversations/{conversationId}/messages": {"get": _op(
                "The conversation's messages from the agent API, newest page first",
                {"200": _json(_ref("MessagePage"), "A page"), **_errors(400, 404, 502)},
                _CONVERSATION, _LIMIT, _AGENT_CURSOR)},
            "/admin/conversations/{conversationId}/pause": {"post": _op(
                "Stop the agent answering here", {"200": conversation, **_errors(404)}, _CONVERSATION)},
            "/admin/conversations/{conversationId}/resume": {"post": _op(
                "Let the agent answer again (ends a handoff)", {"200": conversation, **_errors(404)},
                _CONVERSATION)},
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
