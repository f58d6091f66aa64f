"""The "user created" hook fires exactly once per new account, whatever the sign-up path,
and only after the account is committed."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from core.accounts import ExternalProfile, register_user, sign_in_external
from core.db import async_engine, async_session_factory
from core.errors import Conflict
from core.user_events import subscribe
from models import User

created: list[tuple[uuid.UUID, bool]] = []


async def _record(user_id: uuid.UUID) -> None:
    # Seen from another session: the hook must only run once the row is visible to others.
    async with async_session_factory()() as session:
        created.append((user_id, await session.get(User, user_id) is not None))


@pytest.fixture
async def hook_calls():
    subscribe(_record)
    created.clear()
    yield created
    created.clear()
    await async_engine().dispose()


async def test_every_sign_up_path_fires_the_hook_once(hook_calls) -> None:
    async with async_session_factory()() as session:
        password_user = await register_user(
            session, email="Hook@Example.com", password="long enough"
        )
        with pytest.raises(Conflict):
            await register_user(session, email="hook@example.com", password="long enough")

        apple = ExternalProfile("apple", "apple-sub", "relay@privaterelay.appleid.com", True)
        apple_user = await sign_in_external(session, apple)
        assert (await sign_in_external(session, apple)).id == apple_user.id

        linked = ExternalProfile("linuxdo", "77", "hook@example.com", True, "hooky")
        assert (await sign_in_external(session, linked)).id == password_user.id

        unverified = ExternalProfile("linuxdo", "78", "hook@example.com", False, "hooky")
        stranger = await sign_in_external(session, unverified)
        assert stranger.id != password_user.id
        assert stranger.username == "hooky"

        emails = set((await session.scalars(select(User.email))).all())
    assert hook_calls == [(password_user.id, True), (apple_user.id, True), (stranger.id, True)]
    assert "hook@example.com" in emails and len(emails) == 3
