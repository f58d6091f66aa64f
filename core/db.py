"""Database engines: async for the API process, sync short-lived sessions for workers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from core.config import settings

# Fail fast when PostgreSQL is gone instead of hanging a request for the OS timeout.
_CONNECT_ARGS = {"connect_timeout": 5}


@cache
def async_engine() -> AsyncEngine:
    return create_async_engine(
        settings.require_database_url(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args=_CONNECT_ARGS,
    )


@cache
def async_session_factory() -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(async_engine(), expire_on_commit=False)


@cache
def sync_engine() -> Engine:
    return create_engine(
        settings.require_database_url(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args=_CONNECT_ARGS,
    )


@cache
def _sync_session_factory() -> sessionmaker[Session]:
    return sessionmaker(sync_engine(), expire_on_commit=False)


@contextmanager
def worker_session() -> Iterator[Session]:
    """A short transaction for worker code: commits on success, rolls back on error."""
    with _sync_session_factory().begin() as session:
        yield session
