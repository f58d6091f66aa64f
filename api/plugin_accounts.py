"""The API's side of plug-in-api accounts: starting provisioning for a new user,
finding the caller's usable key, and noting its use without a database write.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
import redis.exceptions
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from api.streaming.enqueue import enqueue
from core.crypto import decrypt_secret
from core.db import async_session_factory
from core.errors import Conflict
from core.plugin_accounts import (
    LAST_USED_FLUSHING_KEY,
    LAST_USED_KEY,
    UsableAccount,
    insert_pending_accounts,
    usable,
)
from models import PluginAccount, User

log = logging.getLogger("switchboard.plugin_api")


async def start_provisioning(user_id: uuid.UUID) -> None:
    """The "user created" hook: a `pending` account and a provisioning job.

    Sign-up has already committed, so a failure here must not fail it: the beat
    job gives accounts to users who have none and re-queues pending ones.
    """
    try:
        async with async_session_factory()() as session:
            await session.execute(insert_pending_accounts(User.id == user_id))
            await session.commit()
        await enqueue("workers.plugin.provision", str(user_id))
    except (SQLAlchemyError, BrokerError, redis.exceptions.RedisError, OSError) as error:
        log.warning(
            "plug-in-api provisioning left to the beat re-queue for %s: %s",
            user_id,
            type(error).__name__,
        )


@dataclass(frozen=True)
class PluginCredentials:
    user_id: uuid.UUID
    plugin_user_id: str
    api_key: str


async def active_account(session: AsyncSession, user_id: uuid.UUID) -> UsableAccount:
    """The user's usable account, or 409 `plugin_account_pending`."""
    account = usable(
        await session.scalar(select(PluginAccount).where(PluginAccount.user_id == user_id))
    )
    if account is None:
        raise Conflict(
            "Your plug-in API account is still being set up; try again shortly.",
            code="plugin_account_pending",
        )
    return account


async def active_credentials(session: AsyncSession, user_id: uuid.UUID) -> PluginCredentials:
    account = await active_account(session, user_id)
    return PluginCredentials(
        user_id=user_id,
        plugin_user_id=account.plugin_user_id,
        api_key=decrypt_secret(account.api_key_encrypted),
    )


async def record_use(redis: aioredis.Redis, user_id: uuid.UUID) -> None:
    """One HSET per call; `workers.plugin.flush_last_used` carries it to PostgreSQL."""
    await redis.hset(LAST_USED_KEY, str(user_id), datetime.now(UTC).isoformat())


async def pending_last_use(redis: aioredis.Redis, user_id: uuid.UUID) -> datetime | None:
    """The latest use not yet flushed to PostgreSQL, if any."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(LAST_USED_KEY, str(user_id))
        pipe.hget(LAST_USED_FLUSHING_KEY, str(user_id))
        values = await pipe.execute()
    moments = [datetime.fromisoformat(value) for value in values if value]
    return max(moments, default=None)
