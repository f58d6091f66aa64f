"""Monthly request quotas and per-minute rate limits, enforced in Redis.

The monthly quota, the plan's rpm and the API key's own rpm are checked and
reserved together in one Lua script (core/gate.py, which adds the streaming
capacity of core/admission.py), so N concurrent requests on any number of API
replicas can never overspend (there is no check-then-increment window). The
monthly counter lives at `quota:used:{user}:{period start epoch}`; PostgreSQL's
`users.quota_used` is its durable copy (synced by beat), and a missing counter
(Redis restarted or flushed) is re-seeded from it, never restarted at zero.
Rate windows are sliding: a sorted set of admitted request ids per user and
per key, scored by Redis' own clock so replicas with skewed clocks agree.

No FastAPI or Celery here: the API reserves (async), workers refund and sync.
"""

from __future__ import annotations

import calendar
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import worker_session
from core.errors import AppError
from core.plans import plan_spec
from core.redis import sync_redis
from core.start_script import StartReply, Verdict
from models import User

RATE_WINDOW_MS = 60_000
COUNTER_KEY_PREFIX = "quota:used:"
# A period's counter outlives its period by this much, so a late sync still finds it.
COUNTER_GRACE_SECONDS = 40 * 24 * 3600

# The quota half of core/gate.py's start script, in two Lua fragments: the check
# runs before the capacity check, the take only once everything passed. The names
# they read are core/start_script.py's layout; `now` (ms, Redis' clock) is set by
# the script's clock line. The check leaves `used`, `limit` (the binding rpm),
# `remaining` in its window and `wait` (ms until a slot frees) for the rest of the
# script, or refuses: NEEDS_SEED, RATE_LIMITED or QUOTA_EXCEEDED.
QUOTA_CHECK_LUA = """
local window = tonumber(window_ms)
local used = redis.call('GET', counter_key)
if not used then
  if tonumber(seed) < 0 then return reply{status = NEEDS_SEED} end
  redis.call('SET', counter_key, seed, 'EX', counter_ttl_seconds, 'NX')
  used = redis.call('GET', counter_key)
end
used = tonumber(used)
if used >= tonumber(monthly_limit) then return reply{status = QUOTA_EXCEEDED, used = used} end

local function window_state(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  local wait = 0
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if oldest[2] then wait = tonumber(oldest[2]) + window - now end
  return count, wait
end

local limit = tonumber(plan_rpm)
local count, wait = window_state(user_window_key)
local remaining = limit - count
if key_window_key ~= '' and tonumber(key_rpm) > 0 then
  local klimit = tonumber(key_rpm)
  local kcount, kwait = window_state(key_window_key)
  if klimit - kcount < remaining then
    limit, remaining, wait = klimit, klimit - kcount, kwait
  end
end
if remaining <= 0 then
  return reply{status = RATE_LIMITED, used = used, limit = limit, wait_ms = math.max(wait, 1)}
end
if wait <= 0 then wait = window end
"""

# Spends the request: its rate-window slots and one count of the period.
QUOTA_TAKE_LUA = """
redis.call('ZADD', user_window_key, now, request_id)
redis.call('PEXPIRE', user_window_key, window)
if key_window_key ~= '' then
  redis.call('ZADD', key_window_key, now, request_id)
  redis.call('PEXPIRE', key_window_key, window)
end
used = redis.call('INCR', counter_key)
"""

# KEYS: counter, user window, key window (''). ARGV: request id.
# Gives back one request and its rate-window slots; never drives the counter negative.
REFUND_SCRIPT = """
if KEYS[3] ~= '' then redis.call('ZREM', KEYS[3], ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
local used = tonumber(redis.call('GET', KEYS[1]) or '-1')
if used > 0 then return redis.call('DECR', KEYS[1]) end
return used
"""


@dataclass(frozen=True, slots=True)
class QuotaSubject:
    """Who a request is charged to: the user, their plan and period, and the API key if any."""

    user_id: uuid.UUID
    plan: str
    period_start_at: datetime
    reset_at: datetime
    api_key_id: uuid.UUID | None = None
    key_rate_limit: int | None = None

    @property
    def monthly_limit(self) -> int:
        return plan_spec(self.plan).monthly_requests

    @property
    def rpm(self) -> int:
        return plan_spec(self.plan).rpm


@dataclass(frozen=True, slots=True)
class Grant:
    """An admitted request; `headers` go on its answer."""

    request_id: str
    used: int
    headers: dict[str, str]


class QuotaExceeded(AppError):
    status_code = 402
    code = "quota_exceeded"


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"


def add_month(moment: datetime) -> datetime:
    """The same day and time one calendar month later, clamped to the month's last day."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def first_period(now: datetime | None = None) -> tuple[datetime, datetime]:
    """A new user's first period: from now (whole seconds) to a month later."""
    start = (now or datetime.now(UTC)).replace(microsecond=0)
    return start, add_month(start)


def next_period(start: datetime, reset_at: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The period containing `now` after a period that ended; skips months nobody used."""
    while reset_at <= now:
        start, reset_at = reset_at, add_month(reset_at)
    return start, reset_at


def counter_key(user_id: uuid.UUID | str, period_start_at: datetime) -> str:
    return f"{COUNTER_KEY_PREFIX}{user_id}:{int(period_start_at.timestamp())}"


def parse_counter_key(key: str) -> tuple[uuid.UUID, int]:
    """User id and period-start epoch of a counter key."""
    user_id, _, epoch = key.removeprefix(COUNTER_KEY_PREFIX).rpartition(":")
    return uuid.UUID(user_id), int(epoch)


def counter_ttl_seconds(reset_at: datetime) -> int:
    return max(int((reset_at - datetime.now(UTC)).total_seconds()), 0) + COUNTER_GRACE_SECONDS


def window_keys(user_id: uuid.UUID, api_key_id: uuid.UUID | None) -> tuple[str, str]:
    """The user's and the key's per-minute windows ('' without a key)."""
    return f"ratelimit:user:{user_id}", f"ratelimit:key:{api_key_id}" if api_key_id else ""


def _refund_keys(subject: QuotaSubject) -> list[str]:
    return [
        counter_key(subject.user_id, subject.period_start_at),
        *window_keys(subject.user_id, subject.api_key_id),
    ]


def _seconds(ms: int) -> int:
    return max(math.ceil(ms / 1000), 1)


def window_headers(limit: int, remaining: int, wait_ms: int) -> dict[str, str]:
    """X-RateLimit-* of the binding per-minute window."""
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(remaining, 0)),
        "X-RateLimit-Reset": str(_seconds(wait_ms)),
    }


def outcome(subject: QuotaSubject, request_id: str, reply: StartReply) -> Grant:
    """The grant of an admitting reply, or the quota or rate refusal it names."""
    if reply.status == Verdict.QUOTA_EXCEEDED:
        until_reset = (subject.reset_at - datetime.now(UTC)).total_seconds()
        raise QuotaExceeded(
            f"The monthly quota of {subject.monthly_limit} requests is spent; "
            f"it renews at {subject.reset_at.isoformat()}.",
            headers={
                "Retry-After": str(max(math.ceil(until_reset), 1)),
                "X-RateLimit-Limit": str(subject.rpm),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(max(math.ceil(until_reset), 1)),
            },
        )
    if reply.status == Verdict.RATE_LIMITED:
        limit, wait_ms = reply.limit, reply.wait_ms
        raise RateLimited(
            f"Rate limit of {limit} requests per minute reached; retry in {_seconds(wait_ms)} s.",
            headers={"Retry-After": str(_seconds(wait_ms)), **window_headers(limit, 0, wait_ms)},
        )
    return Grant(
        request_id=request_id,
        used=reply.used,
        headers=window_headers(reply.limit, reply.remaining, reply.wait_ms),
    )


def refund_in(pipe: AsyncPipeline, subject: QuotaSubject, request_id: str) -> None:
    """Queue giving back one reserved request on a pipeline."""
    keys = _refund_keys(subject)
    pipe.eval(REFUND_SCRIPT, len(keys), *keys, request_id)


def refund_generation(
    user_id: uuid.UUID, api_key_id: uuid.UUID | None, generation_id: uuid.UUID
) -> None:
    """Give back the request of a generation that failed before its first token (workers)."""
    with worker_session() as session:
        start = session.scalar(select(User.quota_period_start_at).where(User.id == user_id))
    if start is None:
        return
    keys = [counter_key(user_id, start), *window_keys(user_id, api_key_id)]
    sync_redis().eval(REFUND_SCRIPT, len(keys), *keys, str(generation_id))


async def current_used(
    store: aioredis.Redis, subject: QuotaSubject, load_used: Callable[[], Awaitable[int]]
) -> int:
    """The live count of the subject's period, re-seeding Redis if it lost the counter."""
    key = counter_key(subject.user_id, subject.period_start_at)
    value = await store.get(key)
    if value is not None:
        return int(value)
    seed = await load_used()
    await store.set(key, seed, ex=counter_ttl_seconds(subject.reset_at), nx=True)
    return int(await store.get(key) or seed)


async def durable_used(session: AsyncSession, subject: QuotaSubject) -> int:
    """PostgreSQL's copy of the period's count; 0 once the period has moved on."""
    used = await session.scalar(
        select(User.quota_used).where(
            User.id == subject.user_id, User.quota_period_start_at == subject.period_start_at
        )
    )
    return used or 0


async def ensure_period(session: AsyncSession, user: User) -> None:
    """Start the first quota period of a user who has none yet (race-safe)."""
    if user.quota_period_start_at is not None and user.quota_reset_at is not None:
        return
    start, reset_at = first_period()
    await session.execute(
        update(User)
        .where(User.id == user.id, User.quota_period_start_at.is_(None))
        .values(quota_period_start_at=start, quota_reset_at=reset_at, quota_used=0)
    )
    await session.commit()
    await session.refresh(user, ["quota_period_start_at", "quota_reset_at", "quota_used"])


def subject_for_user(user: User, api_key_id: uuid.UUID | None = None) -> QuotaSubject:
    assert user.quota_period_start_at and user.quota_reset_at, "ensure_period ran first"
    return QuotaSubject(
        user_id=user.id,
        plan=user.plan,
        period_start_at=user.quota_period_start_at,
        reset_at=user.quota_reset_at,
        api_key_id=api_key_id,
    )
