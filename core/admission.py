"""Admission control: how many generations may stream at once, in the chat worker
pool and per user, enforced in Redis so every API replica shares the count.

Checked and taken in the same Lua script as the quota (core/gate.py), after
it. Past capacity a new generation is refused at once (503 for a full pool, 429 for
a user at their own limit, both with `Retry-After`) instead of waiting in the
Celery queue for seconds behind busy worker threads. A slot is a sorted-set
member (the generation id) scored by its expiry: the worker releases it after
the terminal event, the sweep releases those of dead workers, and an entry
nobody released expires after the generation timeout, so slots never leak.

No FastAPI or Celery here: the API admits (through core/gate.py), workers and the
sweep release. `PoolView` is what one API process last learned of the pool, for
refusing a flood before it costs a round trip (api/shed.py).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import NoReturn

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from core.config import settings
from core.errors import AppError, Unavailable
from core.redis import sync_redis
from core.start_script import Verdict

POOL_KEY = "admission:pool:chat"
# A refused client retries after this; slots free as fast as replies finish.
RETRY_AFTER_SECONDS = 1
POOL_FULL_MESSAGE = "Every worker is busy; try again shortly."

# The capacity half of core/gate.py's start script, in two Lua fragments: the
# check runs after the quota's check (contractual limits are judged first), the
# take only once everything passed. The names they read are core/start_script.py's
# layout; `now`, `used`, `limit`, `remaining` and `wait` come from the quota check.
# Refuses POOL_FULL or USER_FULL with the untouched rpm window; leaves `in_pool`
# (the pool's slots in use before this one) for the admitted reply.
CAPACITY_CHECK_LUA = """
redis.call('ZREMRANGEBYSCORE', pool_key, '-inf', now)
redis.call('ZREMRANGEBYSCORE', user_slots_key, '-inf', now)
local in_pool = redis.call('ZCARD', pool_key)
local full = nil
if in_pool >= tonumber(pool_limit) then
  full = POOL_FULL
elseif redis.call('ZCARD', user_slots_key) >= tonumber(user_stream_limit) then
  full = USER_FULL
end
if full then
  return reply{status = full, used = used, limit = limit, remaining = remaining, wait_ms = wait}
end
"""

CAPACITY_TAKE_LUA = """
local expires = now + tonumber(slot_ttl_ms)
redis.call('ZADD', pool_key, expires, request_id)
redis.call('ZADD', user_slots_key, expires, request_id)
redis.call('PEXPIRE', user_slots_key, slot_ttl_ms)
"""


class TooManyStreams(AppError):
    status_code = 429
    code = "rate_limited"


def user_key(user_id: uuid.UUID | str) -> str:
    return f"admission:user:{user_id}"


def pool_limit() -> int:
    return settings.chat_max_streams or settings.worker_concurrency


def slot_ttl_ms() -> int:
    # Longer than any generation may run, so only a slot nobody released ever expires.
    return (settings.generation_timeout_seconds + 60) * 1000


def refuse(verdict: Verdict, rate_headers: dict[str, str]) -> NoReturn:
    """Raise 503 (pool full) or 429 (user's limit; with the untouched rpm window's headers)."""
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if verdict == Verdict.POOL_FULL:
        raise Unavailable(POOL_FULL_MESSAGE, headers=retry)
    raise TooManyStreams(
        f"At most {settings.chat_max_streams_per_user} generations may stream at once "
        "per user; wait for one to finish.",
        headers={**retry, **rate_headers},
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


@dataclass(eq=False)
class _Start:
    """One generation-starting request between the shed guard and its gate verdict."""

    settled: bool = False


_current_start: ContextVar[_Start | None] = ContextVar("current_start", default=None)


class PoolView:
    """This API process' estimate of the chat pool: the slots in use at the last gate
    verdict (trusted for `chat_shed_seconds` only, since slots free all the time) plus
    the requests of this process still waiting for their verdict. A hint for shedding,
    never for admitting: admission itself stays the atomic script."""

    def __init__(self) -> None:
        self.pending = 0
        self.in_pool = 0
        self.seen_at = -math.inf

    def full(self) -> bool:
        fresh = time.monotonic() - self.seen_at < settings.chat_shed_seconds
        return self.pending + (self.in_pool if fresh else 0) >= pool_limit()

    @contextmanager
    def starting(self) -> Iterator[None]:
        """Count one request as pending until its verdict (`observe`) or its end."""
        start = _Start()
        self.pending += 1
        token = _current_start.set(start)
        try:
            yield
        finally:
            _current_start.reset(token)
            self._settle(start)

    def observe(self, in_pool: int | None) -> None:
        """The current request's verdict, with the pool's slots in use when known."""
        if (start := _current_start.get()) is not None:
            self._settle(start)
        if in_pool is not None:
            self.in_pool, self.seen_at = in_pool, time.monotonic()

    def _settle(self, start: _Start) -> None:
        if not start.settled:
            start.settled = True
            self.pending -= 1


pool_view = PoolView()
