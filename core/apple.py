"""Sign in with Apple: verify an identity token against Apple's published keys.

The signature is RS256 only (the algorithm is pinned, never taken from the
token). Apple's JWKS is cached per process and fetched again when a token names
a key we do not know (Apple rotates keys), at most once per cooldown so forged
`kid`s cannot make us hammer Apple.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import httpx
import jwt

from core.accounts import ExternalProfile
from core.config import settings
from core.errors import Unauthorized, Unavailable, UpstreamError

ALGORITHM = "RS256"
LEEWAY_SECONDS = 60
JWKS_TIMEOUT = 5.0
REFETCH_COOLDOWN_SECONDS = 2.0


class _JwksCache:
    def __init__(self) -> None:
        self.keys: dict[str, jwt.PyJWK] = {}
        self.url: str | None = None
        self.fetched_at = float("-inf")
        self.lock = asyncio.Lock()

    async def _fetch(self, url: str) -> None:
        try:
            async with httpx.AsyncClient(timeout=JWKS_TIMEOUT, follow_redirects=False) as http:
                answer = await http.get(url)
            answer.raise_for_status()
            entries = answer.json()["keys"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            raise UpstreamError("Apple's signing keys could not be fetched.") from error
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            if entry.get("kty") != "RSA" or "kid" not in entry:
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry, algorithm=ALGORITHM)
            except jwt.PyJWTError:
                continue
        self.keys, self.url, self.fetched_at = keys, url, time.monotonic()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        url = settings.apple_jwks_url
        if self.url == url and kid in self.keys:
            return self.keys[kid]
        async with self.lock:
            stale = self.url != url
            cooled = time.monotonic() - self.fetched_at >= REFETCH_COOLDOWN_SECONDS
            if kid not in self.keys and (stale or cooled):
                await self._fetch(url)
        return self.keys.get(kid)


_jwks = _JwksCache()


def _nonce_matches(claimed: Any, sent: str) -> bool:
    # Apps pass Apple either the raw nonce or its SHA-256 hex (Apple's own sample does the latter).
    if not isinstance(claimed, str):
        return False
    hashed = hashlib.sha256(sent.encode()).hexdigest()
    return hmac.compare_digest(claimed, sent) or hmac.compare_digest(claimed, hashed)


def _is_true(value: Any) -> bool:
    # Apple sends these booleans as JSON booleans or as the strings "true"/"false".
    return value is True or value == "true"


async def verify_identity_token(identity_token: str, nonce: str | None = None) -> ExternalProfile:
    if not settings.apple_client_ids:
        raise Unavailable("Sign in with Apple is not configured.")
    try:
        header = jwt.get_unverified_header(identity_token)
    except jwt.PyJWTError:
        raise Unauthorized("The Apple identity token is invalid.") from None
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str):
        raise Unauthorized("The Apple identity token is invalid.")
    key = await _jwks.key(kid)
    if key is None:
        raise Unauthorized("The Apple identity token is signed by an unknown key.")
    try:
        claims = jwt.decode(
            identity_token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.apple_client_ids,
            issuer=settings.apple_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The Apple identity token has expired.", code="token_expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("The Apple identity token is invalid.") from None
    if nonce is not None and not _nonce_matches(claims.get("nonce"), nonce):
        raise Unauthorized("The Apple identity token does not carry this nonce.")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("The Apple identity token is invalid.")
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    return ExternalProfile(
        provider="apple",
        subject=subject,
        email=email,
        email_verified=email is not None and _is_true(claims.get("email_verified")),
    )
