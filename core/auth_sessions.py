"""Login sessions: opening one, rotating its refresh token with reuse detection, revoking it.

A session row holds the hash of the one refresh token that may still be used.
Presenting any older refresh token of the session is taken as theft (RFC 6819
section 5.2.2.3) and ends the whole session. Revocation also writes a Redis key
that the access-token check reads, so access tokens die at once, not at expiry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import redis.asyncio as aioredis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import settings
from core.errors import Unauthorized
from core.security import (
    LEEWAY_SECONDS,
    create_token,
    decode_token,
    hash_token,
    revoked_session_key,
)
from models import AuthSession, User
from models.base import utcnow


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User


def _revocation_ttl() -> int:
    # Past this, every access token of the session has expired on its own.
    return settings.access_token_ttl_seconds + LEEWAY_SECONDS


async def open_session(
    session: AsyncSession,
    user: User,
    *,
    user_agent: str | None = None,
    ip_address: str | None = None,
) -> IssuedTokens:
    session_id = uuid.uuid4()
    refresh, refresh_ttl = create_token(user.id, session_id, "refresh")
    session.add(
        AuthSession(
            id=session_id,
            user_id=user.id,
            refresh_token_hash=hash_token(refresh),
            expires_at=utcnow() + timedelta(seconds=refresh_ttl),
            user_agent=user_agent[:512] if user_agent else None,
            ip_address=ip_address,
        )
    )
    await session.commit()
    access, access_ttl = create_token(user.id, session_id, "access")
    return IssuedTokens(access, refresh, access_ttl, user)


async def _mark_revoked(redis: aioredis.Redis, session_ids: list[uuid.UUID]) -> None:
    if not session_ids:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in session_ids:
            pipe.set(revoked_session_key(session_id), "1", ex=_revocation_ttl())
        await pipe.execute()


async def revoke_session(
    session: AsyncSession, redis: aioredis.Redis, session_id: uuid.UUID, reason: str
) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    await session.commit()
    await _mark_revoked(redis, [session_id])


async def revoke_user_sessions(
    session: AsyncSession,
    redis: aioredis.Redis,
    user_id: uuid.UUID,
    reason: str,
    *,
    keep: uuid.UUID | None = None,
) -> None:
    """End every live session of the user except `keep` (the caller's own)."""
    statement = (
        update(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > utcnow(),
        )
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .returning(AuthSession.id)
    )
    if keep is not None:
        statement = statement.where(AuthSession.id != keep)
    revoked = list((await session.scalars(statement)).all())
    await session.commit()
    await _mark_revoked(redis, revoked)


async def rotate_refresh_token(
    session: AsyncSession, redis: aioredis.Redis, refresh_token: str
) -> IssuedTokens:
    claims = decode_token(refresh_token, "refresh")
    # The row lock makes two concurrent refreshes with one token a detected reuse, not a fork.
    row = await session.scalar(
        select(AuthSession).where(AuthSession.id == claims.session_id).with_for_update()
    )
    if row is None or row.user_id != claims.user_id or row.revoked_at is not None:
        await session.rollback()
        raise Unauthorized("The session has ended.", code="token_invalid")
    if row.refresh_token_hash != hash_token(refresh_token):
        row.revoked_at = utcnow()
        row.revoked_reason = "refresh_reuse"
        await session.commit()
        await _mark_revoked(redis, [row.id])
        raise Unauthorized(
            "This refresh token was already used; the session has been ended.",
            code="token_invalid",
        )
    if row.expires_at <= utcnow():
        await session.rollback()
        raise Unauthorized("The session has expired.", code="token_expired")
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active:
        await session.rollback()
        raise Unauthorized("The account is not active.", code="token_invalid")

    refresh, refresh_ttl = create_token(user.id, row.id, "refresh")
    row.refresh_token_hash = hash_token(refresh)
    row.rotated_at = utcnow()
    row.expires_at = row.rotated_at + timedelta(seconds=refresh_ttl)
    await session.commit()
    access, access_ttl = create_token(user.id, row.id, "access")
    return IssuedTokens(access, refresh, access_ttl, user)
