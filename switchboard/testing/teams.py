"""An in-process fake of Microsoft Teams' side of the Bot Framework: issuer, token service, connector.

    async with FakeTeams() as teams:
        config = teams.channel_config()            # app_id, app_password, api_base, login_base, openid_metadata
        await teams.send(gateway_url + "/webhooks/teams", teams.message("hi"))
        teams.conversation(teams.PERSONAL)          # what the user sees now

* **Issuer.** Requests to the bot are signed RS256 with a test key set: ``/botframework/openid``
  is Bot Framework's OpenID metadata, its ``jwks_uri`` the public keys (endorsed for ``msteams``).
  ``token()`` issues a real JWT (``iss`` https://api.botframework.com, ``aud`` the app id,
  ``serviceurl``); any claim or the key can be overridden to forge a bad one (``rogue=True`` signs
  with a key that is not published).
* **Token service.** ``POST /<tenant>/oauth2/v2.0/token`` (client credentials) checks the app id and
  secret and returns a bearer token that the connector then requires.
* **Connector.** ``/v3/conversations/...``: send, reply, update, delete, create conversation
  (a new channel thread). Streaming follows Teams' documented rules: only in personal chats, an
  informative or streaming typing activity opens a stream (its id is the stream id), each chunk
  has a higher ``streamSequence`` and contains all earlier text, a ``final`` message ends it, and
  later steps are refused (``ContentStreamAlreadyEnded``). ``fail_next`` injects faults (429 with
  ``Retry-After``, 5xx).
"""

from __future__ import annotations

import functools
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from switchboard.testing.fakes import FakeServer

APP_ID = "11111111-2222-3333-4444-555555555555"
APP_PASSWORD = "fake-app-secret"
TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
BOT = f"28:{APP_ID}"
BOT_NAME = "Switchboard"
BF_ISSUER = "https://api.botframework.com"
PERSONAL = "a:1personal-chat"
GROUP = "19:group-chat@thread.v2"
CHANNEL = "19:general@thread.tacv2"


KID = "test-key-1"


@functools.cache
def _key(name: str) -> rsa.RSAPrivateKey:
    """The test issuer's key ("issuer") and an attacker's ("rogue"): one of each per process."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def issue_token(*, app_id: str = APP_ID, rogue: bool = False, kid: str = KID, **claims: Any) -> str:
    """A Bot Framework token signed by the test issuer (``rogue``: by a key nobody published).

    ``claims`` override the defaults (``aud``, ``iss``, ``exp``...); None drops a claim. Without a
    ``serviceurl`` claim the token is good for any service URL.
    """
    now = int(time.time())
    body: dict[str, Any] = {"iss": BF_ISSUER, "aud": app_id, "nbf": now - 5, "iat": now - 5, "exp": now + 3600}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, _key("rogue" if rogue else "issuer"), algorithm="RS256", headers={"kid": kid})


@dataclass
class Posted:
    """An activity the bot sent, as the user sees it now."""

    id: str
    conversation: str
    activity: dict[str, Any]
    edits: int = 0
    deleted: bool = False

    @property
    def text(self) -> str:
        return str(self.activity.get("text", ""))


@dataclass
class Stream:
    id: str
    conversation: str
    steps: list[dict[str, Any]] = field(default_factory=list)  # every activity of the stream, in order
    ended: bool = False
    expired: bool = False


@dataclass
class FakeTeams(FakeServer):
    app_id: str = APP_ID
    app_password: str = APP_PASSWORD
    calls: list[tuple[str, str, dict[str, Any] | None, int]] = field(default_factory=list)
    posted: dict[str, Posted] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)
    tokens_issued: int = 0
    metadata_reads: int = 0
    #: False: Teams refuses streaming (the tenant or client does not allow it)
    streaming_allowed: bool = True
    _faults: dict[str, list[tuple[int, str, float | None]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _server: TestServer | None = None

    def __post_init__(self) -> None:
        self.kid = KID
        self._signing = _key("issuer")
        self._tokens: set[str] = set()
        self._certificates: list[x509.Certificate] = []

    # -- configuration -----------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/botframework/openid", self._openid)
        app.router.add_get("/botframework/keys", self._keys)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._entra_openid)
        app.router.add_get("/{tenant}/discovery/v2.0/keys", self._entra_keys)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_post("/v3/conversations", self._create)
        app.router.add_post("/v3/conversations/{conversation}/activities", self._send)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self._send)
        app.router.add_put("/v3/conversations/{conversation}/activities/{activity}", self._update)
        app.router.add_delete("/v3/conversations/{conversation}/activities/{activity}", self._delete)

    @property
    def service_url(self) -> str:
        return self.base_url() + "/"

    def channel_config(self, **extra: Any) -> dict[str, Any]:
        return {"type": "teams", "app_id": self.app_id, "app_password": self.app_password,
                "api_base": self.service_url, "login_base": self.base_url(),
                "openid_metadata": self.base_url("/botframework/openid"), **extra}

    def fail_next(self, operation: str, status: int = 500, message: str = "test fault", *,
                  retry_after: float | None = None) -> None:
        """Fail the next ``operation`` ("send", "update", "delete", "create")."""
        self._faults.setdefault(operation, []).append((status, message, retry_after))

    # -- the issuer --------------------------------------------------------------------------------
    def token(self, *, rogue: bool = False, kid: str | None = None, **claims: Any) -> str:
        """A signed Bot Framework token for this app and service URL; see :func:`issue_token`."""
        return issue_token(app_id=self.app_id, rogue=rogue, kid=kid or self.kid,
                           **{"serviceurl": self.service_url, **claims})

    async def send(self, url: str, activity: dict[str, Any], *, token: str | None = None,
                   authorization: str | None = None) -> tuple[int, str]:
        """POST ``activity`` to the bot the way the Teams channel does; ``(status, body)``."""
        auth = authorization if authorization is not None else f"Bearer {token or self.token()}"
        async with aiohttp.ClientSession() as http, http.post(url, json=activity,
                                                             headers={"Authorization": auth}) as resp:
            return resp.status, await resp.text()

    async def _openid(self, request: web.Request) -> web.Response:
        self.metadata_reads += 1
        return web.json_response({"issuer": BF_ISSUER, "jwks_uri": self.base_url("/botframework/keys"),
                                  "id_token_signing_alg_values_supported": ["RS256"]})

    async def _keys(self, request: web.Request) -> web.Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._signing.public_key()))
        jwk.update(kid=self.kid, use="sig", endorsements=["msteams"])
        return web.json_response({"keys": [jwk]})

    async def _entra_openid(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        return web.json_response({"issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
                                  "jwks_uri": self.base_url(f"/{tenant}/discovery/v2.0/keys")})

    async def _entra_keys(self, request: web.Request) -> web.Response:
        """Entra ID signs with the same test key here (it has a key of its own in reality)."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._signing.public_key()))
        jwk.update(kid=self.kid, use="sig")
        return web.json_response({"keys": [jwk]})

    # -- the token service -------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "https://api.botframework.com/.default":
            return web.json_response({"error": "invalid_request"}, status=400)
        if form.get("client_id") != self.app_id or not self._credential_ok(form):
            refusal = {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"}
            return web.json_response(refusal, status=401)
        self.tokens_issued += 1
        access = f"fake-access-{uuid.uuid4().hex}"
        self._tokens.add(access)
        return web.json_response({"token_type": "Bearer", "expires_in": 3600, "access_token": access})

    def trust_certificate(self, certificate: x509.Certificate) -> None:
        """Accept client assertions signed with this certificate's key (certificate credentials)."""
        self._certificates.append(certificate)

    def _credential_ok(self, form: Any) -> bool:
        assertion = form.get("client_assertion")
        if assertion is None:
            return bool(form.get("client_secret") == self.app_password)
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return False
        for certificate in self._certificates:
            public_key = certificate.public_key()
            if not isinstance(public_key, rsa.RSAPublicKey):
                continue
            try:
                claims = jwt.decode(str(assertion), public_key, algorithms=["RS256"],
                                    audience=self.base_url(f"/{TENANT}/oauth2/v2.0/token"))
            except jwt.InvalidTokenError:
                continue
            if claims.get("iss") == claims.get("sub") == self.app_id:
                return True
        return False

    # -- the connector -----------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and token in self._tokens

    def _refuse(self, operation: str, request: web.Request, body: dict[str, Any] | None) -> web.Response | None:
        if not self._authorised(request):
            return self._record(operation, request, body, 401, {"error": {"code": "Unauthorized"}})
        faults = self._faults.get(operation)
        if faults:
            status, message, retry_after = faults.pop(0)
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return self._record(operation, request, body, status, {"error": {"code": "Fault", "message": message}},
                                headers)
        return None

    def _record(self, operation: str, request: web.Request, body: dict[str, Any] | None, status: int,
                answer: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        self.calls.append((operation, request.match_info.get("conversation", ""), body, status))
        return web.json_response(answer, status=status, headers=headers)

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        refused = self._refuse("send", request, body)
        if refused is not None:
            return refused
        conversation = request.match_info["conversation"]
        new_id = str(next(self._ids))
        info = next((e for e in body.get("entities") or [] if e.get("type") == "streaminfo"), None)
        if info is not None:
            problem = self._stream_step(conversation, body, info, new_id)
            if problem is not None:
                forbidden = any(word in problem for word in ("Allowed", "Ended", "Expired"))
                return self._record("send", request, body, 403 if forbidden else 400,
                                    {"error": {"code": problem, "message": problem}})
            if body.get("type") == "typing":
                return self._record("send", request, body, 201, {"id": info.get("streamId") or new_id})
        if body.get("type") == "message":
            message_id = info["streamId"] if info is not None else new_id
            self.posted[message_id] = Posted(message_id, conversation, body)
            return self._record("send", request, body, 201, {"id": message_id})
        return self._record("send", request, body, 200, {})

    def expire_streams(self) -> None:
        """Every open stream times out (Teams ends a stream left without updates)."""
        for stream in self.streams.values():
            stream.expired = True

    def _stream_step(self, conversation: str, body: dict[str, Any], info: dict[str, Any], new_id: str) -> str | None:
        if not conversation.startswith("a:") or not self.streaming_allowed:
            return "ContentStreamNotAllowed"
        kind, stream_id = info.get("streamType"), info.get("streamId")
        if stream_id is None:
            if body.get("type") != "typing" or kind not in ("informative", "streaming") \
                    or info.get("streamSequence") != 1:
                return "BadStreamStart"
            self.streams[new_id] = Stream(new_id, conversation, [body])
            return None
        stream = self.streams.get(stream_id)
        if stream is None or stream.conversation != conversation:
            return "ContentStreamNotFound"
        if stream.ended:
            return "ContentStreamAlreadyEnded"
        if stream.expired:
            return "ContentStreamHasExpired"
        if kind == "final":
            if body.get("type") != "message":
                return "BadFinal"
            stream.ended = True
        else:
            previous = [s for s in stream.steps if s.get("type") == "typing"]
            last = next(e for e in previous[-1]["entities"] if e.get("type") == "streaminfo")
            if int(info.get("streamSequence", 0)) <= int(last.get("streamSequence", 0)):
                return "ContentStreamSequenceOrderPreConditionFailed"
            chunks = [s for s in previous if _info(s).get("streamType") == "streaming"]
            if chunks and not str(body.get("text", "")).startswith(str(chunks[-1].get("text", ""))):
                return "ContentStreamNotAllowed: chunks must contain the earlier text"
        stream.steps.append(body)
        return None

    async def _update(self, request: web.Request) -> web.Response:
        body = await request.json()
        refused = self._refuse("update", request, body)
        if refused is not None:
            return refused
        posted = self.posted.get(request.match_info["activity"])
        if posted is None or posted.deleted:
            return self._record("update", request, body, 404, {"error": {"code": "ActivityNotFound"}})
        posted.activity, posted.edits = body, posted.edits + 1
        return self._record("update", request, body, 200, {"id": posted.id})

    async def _delete(self, request: web.Request) -> web.Response:
        refused = self._refuse("delete", request, None)
        if refused is not None:
            return refused
        posted = self.posted.get(request.match_info["activity"])
        if posted is None or posted.deleted:
            return self._record("delete", request, None, 404, {"error": {"code": "ActivityNotFound"}})
        posted.deleted = True
        return self._record("delete", request, None, 200, {})

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        refused = self._refuse("create", request, body)
        if refused is not None:
            return refused
        channel = ((body.get("channelData") or {}).get("channel") or {}).get("id")
        first = body.get("activity")
        if not body.get("isGroup") or not channel or not isinstance(first, dict):
            return self._record("create", request, body, 400, {"error": {"code": "BadArgument"}})
        root = str(next(self._ids))
        conversation = f"{channel};messageid={root}"
        self.posted[root] = Posted(root, conversation, first)
        return self._record("create", request, body, 201, {"id": conversation, "activityId": root})

    # -- what the user sees --------------------------------------------------------------------------
    def conversation(self, conversation: str) -> list[Posted]:
        """The bot's messages in a conversation (or channel thread), oldest first, deleted ones left out."""
        return [p for p in self.posted.values() if p.conversation == conversation and not p.deleted]

    def texts(self, conversation: str) -> list[str]:
        return [p.text for p in self.conversation(conversation)]

    def sent(self, operation: str = "send", conversation: str | None = None) -> list[dict[str, Any]]:
        return [body or {} for op, conv, body, status in self.calls
                if op == operation and status < 300 and (conversation is None or conv == conversation)]

    # -- activities Teams sends ------------------------------------------------------------------------
    def message(self, text: str, *, conversation: str = PERSONAL, kind: str = "personal", user: str = "29:ann",
                aad: str | None = "aad-ann", name: str = "Ann", mention: bool = False,
                activity_id: str | None = None) -> dict[str, Any]:
        """A message activity; ``mention`` puts ``<at>Switchboard</at>`` in front, as Teams does."""
        activity_id = activity_id or str(next(self._ids))
        if kind == "channel" and ";messageid=" not in conversation:
            conversation = f"{conversation};messageid={activity_id}"  # a new post starts its own thread
        activity = self._base("message", conversation, kind, user, aad, name, activity_id)
        activity.update(text=f"<at>{BOT_NAME}</at> {text}" if mention else text, textFormat="plain")
        if mention:
            activity["entities"] = [{"type": "mention", "text": f"<at>{BOT_NAME}</at>",
                                     "mentioned": {"id": BOT, "name": BOT_NAME}}]
        return activity

    def installed(self, *, conversation: str = PERSONAL, kind: str = "personal") -> dict[str, Any]:
        activity = self._base("conversationUpdate", conversation, kind, "29:ann", "aad-ann", "Ann",
                              str(next(self._ids)))
        activity["membersAdded"] = [{"id": BOT}]
        return activity

    def feedback(self, answer_id: str, reaction: str, *, conversation: str = PERSONAL, kind: str = "personal"
                 ) -> dict[str, Any]:
        """The invoke Teams sends when someone votes with its built-in feedback buttons."""
        activity = self._base("invoke", conversation, kind, "29:ann", "aad-ann", "Ann", str(next(self._ids)))
        activity.update(name="message/submitAction", replyToId=answer_id, value={
            "actionName": "feedback",
            "actionValue": {"reaction": reaction, "feedback": json.dumps({"feedbackText": ""})}})
        return activity

    def card_action(self, data: dict[str, Any], verb: str, *, answer_id: str, conversation: str = PERSONAL,
                    kind: str = "personal") -> dict[str, Any]:
        """The invoke an Adaptive Card ``Action.Execute`` button sends."""
        activity = self._base("invoke", conversation, kind, "29:ann", "aad-ann", "Ann", str(next(self._ids)))
        activity.update(name="adaptiveCard/action", replyToId=answer_id,
                        value={"action": {"type": "Action.Execute", "verb": verb, "data": data}})
        return activity

    def _base(self, kind: str, conversation: str, conversation_type: str, user: str, aad: str | None,
              name: str, activity_id: str) -> dict[str, Any]:
        sender: dict[str, Any] = {"id": user, "name": name}
        if aad:
            sender["aadObjectId"] = aad
        return {
            "type": kind, "id": activity_id, "channelId": "msteams", "serviceUrl": self.service_url,
            "timestamp": "2026-01-01T00:00:00.000Z", "from": sender,
            "recipient": {"id": BOT, "name": BOT_NAME},
            "conversation": {"id": conversation, "conversationType": conversation_type, "tenantId": TENANT},
            "channelData": {"tenant": {"id": TENANT}},
        }


def _info(activity: dict[str, Any]) -> dict[str, Any]:
    return next((e for e in activity.get("entities") or [] if e.get("type") == "streaminfo"), {})
