"""`python -m cli create-superuser`: make an account a superuser, creating it if needed.

It goes through the same `register_user` as the API, so the "user created" hook
fires for accounts made here too.
"""

from __future__ import annotations

import asyncio

from email_validator import validate_email

from core.accounts import get_user_by_email, hash_password, register_user
from core.db import async_engine, async_session_factory


async def _create_superuser(email: str, password: str, username: str | None) -> tuple[str, bool]:
    try:
        async with async_session_factory()() as session:
            user = await get_user_by_email(session, email)
            if user is None:
                user = await register_user(
                    session, email=email, password=password, username=username, is_superuser=True
                )
                return str(user.id), True
            user.is_superuser = True
            user.is_active = True
            user.password_hash = await hash_password(password)
            await session.commit()
            return str(user.id), False
    finally:
        await async_engine().dispose()


def create_superuser(email: str, password: str, username: str | None = None) -> tuple[str, bool]:
    """Return the user id and whether the account was created (else promoted)."""
    email = validate_email(email, check_deliverability=False).normalized
    if len(password) < 8:
        raise ValueError("the password must have at least 8 characters")
    return asyncio.run(_create_superuser(email, password, username))
