"""Redis clients, one pool per process.

Two async clients for the API: `redis_client()` for ordinary commands (short
timeouts, so a dead Redis fails a request quickly) and `blocking_redis()` for the
stream hub's `XREAD BLOCK`, which must have no socket timeout or an idle stream would be
cut after the client's default (5 s in redis-py 8).
"""

from __future__ import annotations

from functools import cache
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.maint_notifications import MaintNotificationsConfig
from redis.typing import EncodableT, FieldT

from core.config import settings

COMMAND_TIMEOUT = 5.0


@cache
def redis_client() -> aioredis.Redis:
    # A burst past the pool's size waits for a connection (up to the command timeout)
    # instead of failing with "too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.require_redis_url(),
        decode_responses=True,
        socket_timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=COMMAND_TIMEOUT,
        health_check_interval=30,
        max_connections=256,
        timeout=COMMAND_TIMEOUT,
    )
    return aioredis.Redis(connection_pool=pool)


@cache
def blocking_redis() -> aioredis.Redis:
    """The stream hub's reader (api/streaming/hub.py): one connection per process."""
    return aioredis.Redis.from_url(
        settings.require_redis_url(),
        decode_responses=True,
        socket_timeout=None,
        socket_connect_timeout=COMMAND_TIMEOUT,
        max_connections=2,
    )


def broker_shares_redis() -> bool:
    """Whether the Celery broker is the db of `redis_client()`, so one script or
    pipeline can touch both streams and task queues."""
    return settings.celery_broker_url == settings.require_redis_url()


@cache
def broker_redis() -> aioredis.Redis:
    """Async client of the Celery broker, for publishing tasks from the API."""
    if broker_shares_redis():
        return redis_client()
    return aioredis.Redis.from_url(
        settings.celery_broker_url,
        decode_responses=True,
        socket_timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=COMMAND_TIMEOUT,
        health_check_interval=30,
        max_connections=512,
    )


def loop_redis() -> aioredis.Redis:
    """A new async client, for a chat worker's event loop (workers/event_loop.py
    `loop_local` keeps one per loop: a client must never cross loops)."""
    return aioredis.Redis.from_url(
        settings.require_redis_url(),
        decode_responses=True,
        socket_timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=COMMAND_TIMEOUT,
        health_check_interval=30,
        # Off, so the pool checks a connection before handing it out: with it on ("auto"),
        # redis-py skips that check, and a write after a Redis restart failed on the dead
        # socket instead of reconnecting.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


@cache
def sync_redis() -> redis.Redis:
    """For workers and CLI code: thread-safe pool shared by the worker's threads."""
    return redis.Redis.from_url(
        settings.require_redis_url(),
        decode_responses=True,
        socket_timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=COMMAND_TIMEOUT,
        health_check_interval=30,
        max_connections=1024,
    )


# redis-py annotates replies as `bytes | str` whatever the client, and takes a stream's
# fields as an (invariant) dict of its own unions. Every client above decodes responses,
# so a reply is str: these say so once, for the reply shapes this code reads.
StreamEntry = tuple[str, dict[str, str]]


def as_str(reply: bytes | str | None) -> str | None:
    return cast("str | None", reply)


def as_strs(reply: list[Any]) -> list[str]:
    """A list of members (ZRANGE, SMEMBERS, ...)."""
    return cast("list[str]", reply)


def as_hash(reply: dict[bytes | str, bytes | str]) -> dict[str, str]:
    return cast("dict[str, str]", reply)


def as_entries(reply: object) -> list[StreamEntry]:
    """An XRANGE or XREVRANGE reply."""
    return cast("list[StreamEntry]", reply)


def as_fields(fields: dict[str, str]) -> dict[FieldT, EncodableT]:
    """A stream entry's fields (core/streams.py `encode`) as XADD takes them."""
    return cast("dict[FieldT, EncodableT]", fields)
