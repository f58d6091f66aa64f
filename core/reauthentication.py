"""The check that protects an account where an earlier API asked for no password.

Changing the email or the password without the current password is allowed only
from a session signed in (with a password, Apple or OAuth: the session's creation,
not a token refresh) within the last REAUTH_WINDOW; else 403
`reauthentication_required` (API.md, "Compatibility APIs").
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Forbidden
from models import AuthSession

REAUTH_WINDOW = timedelta(minutes=10)


async def ensure_recent_sign_in(session: AsyncSession, session_id: uuid.UUID) -> None:
    signed_in_at = await session.scalar(
        select(AuthSession.created_at).where(
            AuthSession.id == session_id, AuthSession.revoked_at.is_(None)
        )
    )
    if signed_in_at is None or datetime.now(UTC) - signed_in_at > REAUTH_WINDOW:
        raise Forbidden(
            "Sign in again (within 10 minutes) to change this without the current password.",
            code="reauthentication_required",
        )
