"""Bot Framework authentication, both ways.

Inbound: every request carries ``Authorization: Bearer <JWT>``. It is accepted only when it is
RS256-signed by a key from the OpenID metadata of Bot Framework (or of Entra ID, for a
single-tenant app), issued by one of those issuers, for our app id (``aud``), not expired (five
minutes of clock skew, as the protocol allows), and, when the key is endorsed for channels or the
token names a ``serviceurl``, for this activity's channel and service URL. Keys are cached for a
day; an unknown key id refreshes them at most once per :data:`REFRESH_FLOOR` seconds, so forged
tokens cannot make us hammer the metadata endpoint.

The Agents SDK's ``JwtTokenValidator`` does these checks too, but fetches keys from JWKS URLs it
hard-codes (``login.botframework.com``, ``login.microsoftonline.com``) through a blocking
``PyJWKClient`` in a thread: it cannot be pointed at the OpenID metadata we are configured with
(nor at a test issuer). So the key lookup is ours (aiohttp, the metadata's ``jwks_uri``) and the
checks are PyJWT's, the library the SDK itself validates with.

Outbound: the Bot Connector takes an app token from Entra ID's client-credentials grant (a secret,
or a certificate-signed assertion), cached until five minutes before it expires. The SDK's
``MsalAuth`` builds an MSAL ``ConfidentialClientApplication`` whose authority must be an https
URL, checked by instance discovery against login.microsoftonline.com, with no hook for either: it
cannot reach a token endpoint other than Microsoft's, so the grant (one form POST) is done here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from channels.teams.settings import TeamsSettings
from gateway.errors import ChannelError, ChannelPermanentError, ConfigError, WebhookRejected

#: seconds signing keys are trusted before the metadata is read again
KEY_TTL = 24 * 3600.0
#: an unknown ``kid`` re-reads the metadata at most this often (seconds)
REFRESH_FLOOR = 300.0
#: clock skew allowed on ``exp``/``nbf``, as the Bot Framework protocol does
LEEWAY = 300.0
SCOPE = "https://api.botframework.com/.default"
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SigningKey:
    key: jwt.PyJWK
    #: the channels this key may sign for (Bot Framework's ``endorsements``); empty: any
    endorsements: frozenset[str]


class KeyRing:
    """Signing keys from OpenID metadata documents, cached and refreshed on an unknown ``kid``."""

    def __init__(self, metadata_urls: list[str], http: Callable[[], aiohttp.ClientSession]) -> None:
        self._urls = metadata_urls
        self._http = http
        self._keys: dict[str, SigningKey] = {}
        self._fetched = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> SigningKey | None:
        now = time.monotonic()
        if now - self._fetched > KEY_TTL or (kid not in self._keys and now - self._fetched > REFRESH_FLOOR):
            async with self._lock:
                if time.monotonic() - self._fetched > min(REFRESH_FLOOR, KEY_TTL):
                    await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        keys: dict[str, SigningKey] = {}
        problems: list[str] = []
        for url in self._urls:  # one unreachable document must not void the other's keys
            try:
                keys.update(await self._read(url))
            except (aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError, jwt.PyJWKError) as exc:
                problems.append(f"{url}: {exc}")
        if problems:
            log.warning("could not read the signing keys: %s", "; ".join(problems))
        if not keys:
            if not self._keys:  # nothing to check with: Bot Framework retries a 503
                raise WebhookRejected(503, "cannot load the signing keys")
            # Keep the keys we have; the next unknown key id tries again after REFRESH_FLOOR.
            self._fetched = time.monotonic() - KEY_TTL + REFRESH_FLOOR
            return
        self._keys = keys
        self._fetched = time.monotonic()

    async def _read(self, url: str) -> dict[str, SigningKey]:
        metadata = await self._json(url)
        jwks = await self._json(str(metadata["jwks_uri"]))
        keys: dict[str, SigningKey] = {}
        for jwk in jwks.get("keys", []):
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not jwk.get("kid"):
                continue
            endorsed = jwk.get("endorsements")
            keys[str(jwk["kid"])] = SigningKey(
                jwt.PyJWK(jwk, algorithm="RS256"),
                frozenset(map(str, endorsed)) if isinstance(endorsed, list) else frozenset(),
            )
        return keys

    async def _json(self, url: str) -> dict[str, Any]:
        async with self._http().get(url, timeout=_HTTP_TIMEOUT) as resp:
            resp.raise_for_status()
            data = await resp.json(content_type=None)
        if not isinstance(data, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return data


class InboundAuth:
    """Checks the ``Authorization`` header of an inbound activity."""

    def __init__(self, settings: TeamsSettings, http: Callable[[], aiohttp.ClientSession]) -> None:
        self.settings = settings
        urls = [settings.openid_metadata] + ([settings.entra_metadata] if settings.entra_metadata else [])
        self.keys = KeyRing(urls, http)

    async def check(self, authorization: str, activity: dict[str, Any]) -> dict[str, Any]:
        """The verified claims; raises :class:`WebhookRejected` (401/403) for anything else."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WebhookRejected(401, "missing Bearer token")
        try:
            header = jwt.get_unverified_header(token.strip())
        except jwt.InvalidTokenError as exc:
            raise WebhookRejected(401, f"malformed token: {exc}") from None
        if header.get("alg") != "RS256":
            raise WebhookRejected(401, "token not signed with RS256")
        signing = await self.keys.get(str(header.get("kid", "")))
        if signing is None:
            raise WebhookRejected(401, "token signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token.strip(), signing.key, algorithms=["RS256"], audience=self.settings.app_id,
                issuer=sorted(self.settings.issuers), leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise WebhookRejected(401, f"token refused: {exc}") from None
        channel_id = activity.get("channelId")
        if signing.endorsements and not (isinstance(channel_id, str) and channel_id in signing.endorsements):
            raise WebhookRejected(403, f"the signing key is not endorsed for channel {channel_id!r}")
        claimed = claims.get("serviceurl")
        if claimed is not None and str(claimed).rstrip("/") != str(activity.get("serviceUrl", "")).rstrip("/"):
            raise WebhookRejected(403, "the activity's serviceUrl is not the one the token was issued for")
        return claims


class AppToken:
    """Client-credential tokens for the Bot Connector, cached until shortly before they expire."""

    def __init__(self, settings: TeamsSettings, http: Callable[[], aiohttp.ClientSession]) -> None:
        self.settings = settings
        self._http = http
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        async with self._lock:
            if time.time() > self._expires - 300:
                await self._fetch()
            return self._token

    def forget(self) -> None:
        """The connector refused the token (revoked, rotated): fetch a new one next time."""
        self._expires = 0.0

    async def _fetch(self) -> None:
        form = {"grant_type": "client_credentials", "client_id": self.settings.app_id, "scope": SCOPE}
        if self.settings.app_password:
            form["client_secret"] = self.settings.app_password
        else:
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = certificate_assertion(self.settings)
        try:
            async with self._http().post(self.settings.token_endpoint, data=form, timeout=_HTTP_TIMEOUT) as resp:
                data = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ChannelError(f"Entra ID token endpoint unavailable: {exc}") from exc
        if not isinstance(data, dict):
            raise ChannelError(f"Entra ID token endpoint answered {status} without JSON")
        if status >= 500:
            raise ChannelError(f"Entra ID token endpoint answered {status}")
        if status != 200 or not data.get("access_token"):
            why = data.get("error_description") or data.get("error") or status
            raise ChannelPermanentError(f"Entra ID refused the app credentials: {why}")
        self._token = str(data["access_token"])
        self._expires = time.time() + float(data.get("expires_in", 3600))


def certificate_assertion(settings: TeamsSettings) -> str:
    """A client assertion signed with the app's certificate (RFC 7523, as Entra ID expects)."""
    assert settings.certificate_path is not None
    try:
        pem = Path(settings.certificate_path).read_bytes()
        key = load_pem_private_key(pem, password=None)
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"certificate_path: cannot read a certificate and its private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("certificate_path: the private key must be an RSA key (Entra ID expects RS256 assertions)")
    # x5t is the certificate's SHA-1 thumbprint by definition (RFC 7515), not a security choice
    thumbprint = base64.urlsafe_b64encode(hashlib.sha1(cert.public_bytes(Encoding.DER)).digest()).rstrip(b"=")
    now = int(time.time())
    claims = {"aud": settings.token_endpoint, "iss": settings.app_id, "sub": settings.app_id,
              "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"x5t": thumbprint.decode()})
