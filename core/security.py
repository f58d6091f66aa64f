"""Tokens and passwords.

JWTs are HS256 only (the algorithm is pinned, never read from the token) and
carry `typ` so an access token is never accepted as a refresh token or the
other way round, plus `sid`, the login session, so that revoking a session
kills its access tokens before they expire.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from core.config import settings
from core.errors import Unauthorized

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30
TokenType = Literal["access", "refresh"]

BCRYPT_MAX_PASSWORD_BYTES = 72


class LegacyBcryptHasher(BcryptHasher):
    """Verifies the bcrypt hashes (`$2a$`/`$2b$`) that the earlier systems wrote with passlib.

    passlib cut passwords to bcrypt's 72 bytes silently; the bcrypt package refuses longer
    ones, so they are cut here the same way, or a long password of such a hash could never
    sign in (and a long wrong one would be an error rather than a refusal).
    """

    def verify(self, password: str | bytes, hash: str | bytes) -> bool:
        raw = password.encode() if isinstance(password, str) else password
        return super().verify(raw[:BCRYPT_MAX_PASSWORD_BYTES], hash)


# Argon2id hashes every new password; a verified hash of any other kind (or of older Argon2
# parameters) comes back from `verify_and_update` with its Argon2id replacement.
password_hasher = PasswordHash((Argon2Hasher(), LegacyBcryptHasher()))


@cache
def dummy_password_hash() -> str:
    """Verified when the email is unknown so both failures cost the same time. Made on
    first use, not at import: an Argon2 hash takes 64 MiB, and the workers never sign
    anyone in."""
    return password_hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    typ: TokenType
    expires_at: datetime
    jti: str


def _secret() -> str:
    assert settings.secret_key, "settings guarantee a secret key"
    return settings.secret_key


def create_token(user_id: uuid.UUID, session_id: uuid.UUID, typ: TokenType) -> tuple[str, int]:
    """Return the encoded token and its lifetime in seconds."""
    ttl = (
        settings.access_token_ttl_seconds if typ == "access" else settings.refresh_token_ttl_seconds
    )
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "typ": typ,
        "iat": now,
        "exp": now + timedelta(seconds=ttl),
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, _secret(), algorithm=ALGORITHM), ttl


def decode_token(token: str, expected: TokenType) -> TokenClaims:
    try:
        claims = jwt.decode(
            token,
            _secret(),
            algorithms=[ALGORITHM],
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "typ", "sid", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired.", code="token_expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("The token is invalid.", code="token_invalid") from None
    if claims.get("typ") != expected:
        raise Unauthorized(f"An {expected} token is required.", code="token_invalid")
    try:
        return TokenClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            typ=expected,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            jti=str(claims["jti"]),
        )
    except (ValueError, TypeError):
        raise Unauthorized("The token is invalid.", code="token_invalid") from None


def hash_token(token: str) -> str:
    """Refresh tokens and API keys are stored only as this SHA-256 digest."""
    return hashlib.sha256(token.encode()).hexdigest()


def revoked_session_key(session_id: uuid.UUID | str) -> str:
    """Redis key whose presence means the session's access tokens are dead."""
    return f"revoked:sid:{session_id}"
