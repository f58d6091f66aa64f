"""Admission control: how many generations may stream at once, in the chat worker
pool and per user, enforced in Redis so every API replica shares the count.

Past capacity a new generation is refused at once (503 for a full pool, 429 for
a user at their own limit, both with `Retry-After`) instead of waiting in the
Celery queue for seconds behind busy worker threads. A slot is a sorted-set
member (the generation id) scored by its expiry: the worker releases it after
the terminal event, the sweep releases those of dead workers, and an entry
nobody released expires after the generation timeout, so slots never leak.

No FastAPI or Celery here: the API admits (async), workers and the sweep release.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from core.config import settings
from core.errors import AppError, Unavailable
from core.redis import sync_redis

POOL_KEY = "admission:pool:chat"
POOL_FULL, USER_FULL = 1, 2
# A refused client retries after this; slots free as fast as replies finish.
RETRY_AFTER_SECONDS = 1

# KEYS: pool set, user set. ARGV: pool limit, user limit, generation id, slot ttl ms.
# Returns 0 (admitted), 1 (pool full) or 2 (user at their limit).
ADMIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 2 end
local expires = now + tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], expires, ARGV[3])
redis.call('ZADD', KEYS[2], expires, ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 0
"""


class TooManyStreams(AppError):
    status_code = 429
    code = "rate_limited"


def user_key(user_id: uuid.UUID | str) -> str:
    return f"admission:user:{user_id}"


def pool_limit() -> int:
    return settings.chat_max_streams or settings.worker_concurrency


def _slot_ttl_ms() -> int:
    # Longer than any generation may run, so only a slot nobody released ever expires.
    return (settings.generation_timeout_seconds + 60) * 1000


async def admit(store: aioredis.Redis, user_id: uuid.UUID, generation_id: str) -> None:
    """Take a slot for `generation_id` or raise 503 (pool full) / 429 (user's limit)."""
    status = int(
        await store.eval(
            ADMIT_SCRIPT,
            2,
            POOL_KEY,
            user_key(user_id),
            pool_limit(),
            settings.chat_max_streams_per_user,
            generation_id,
            _slot_ttl_ms(),
        )
    )
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if status == POOL_FULL:
        raise Unavailable("Every worker is busy; try again shortly.", headers=retry)
    if status == USER_FULL:
        raise TooManyStreams(
            f"At most {settings.chat_max_streams_per_user} generations may stream at once "
            "per user; wait for one to finish.",
            headers=retry,
        )


def release_in(pipe: Pipeline | AsyncPipeline, user_id: uuid.UUID, generation_id: str) -> None:
    """Queue the release on a pipeline (sync or async); releasing twice is harmless."""
    pipe.zrem(POOL_KEY, generation_id)
    pipe.zrem(user_key(user_id), generation_id)


async def release(store: aioredis.Redis, user_id: uuid.UUID, generation_id: str) -> None:
    async with store.pipeline(transaction=False) as pipe:
        release_in(pipe, user_id, generation_id)
        await pipe.execute()


def release_sync(user_id: uuid.UUID, generation_id: str) -> None:
    """For workers and the sweep."""
    pipe = sync_redis().pipeline(transaction=False)
    release_in(pipe, user_id, generation_id)
    pipe.execute()
