"""The admission script (core/gate.py `admit`) against the tests' real Redis, with no
API process: what it reserves when every check passes, each refusal with its code
and headers, and that a refusal reserves nothing.

Limits come from the settings the tests run with (the free plan's quota and rpm,
the pool of `WORKER_CONCURRENCY` streams, the per-user stream limit); Redis is
flushed before each test (tests/conftest.py `clean_state`).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from core.admission import POOL_KEY, TooManyStreams, pool_limit, user_key
from core.config import settings
from core.errors import Unavailable
from core.gate import Opening, admit
from core.quota import (
    COUNTER_GRACE_SECONDS,
    Grant,
    QuotaExceeded,
    QuotaSubject,
    RateLimited,
    counter_key,
)
from core.redis import redis_client, sync_redis

RESET_IN = timedelta(days=10)
WINDOW_MS = 60_000


@dataclass
class DurableCount:
    """PostgreSQL's copy of the period's count, as `admit` asks for it."""

    value: int = 0
    calls: int = 0

    async def __call__(self) -> int:
        self.calls += 1
        return self.value


def make_subject(
    api_key_id: uuid.UUID | None = None, key_rate_limit: int | None = None
) -> QuotaSubject:
    reset_at = datetime.now(UTC).replace(microsecond=0) + RESET_IN
    return QuotaSubject(
        user_id=uuid.uuid4(),
        plan="free",
        period_start_at=reset_at - timedelta(days=30),
        reset_at=reset_at,
        api_key_id=api_key_id,
        key_rate_limit=key_rate_limit,
    )


def redis_now_ms() -> int:
    seconds, micros = sync_redis().time()
    return seconds * 1000 + micros // 1000


def window_key(subject: QuotaSubject) -> str:
    return f"ratelimit:user:{subject.user_id}"


def key_window_key(subject: QuotaSubject) -> str:
    return f"ratelimit:key:{subject.api_key_id}"


def set_used(subject: QuotaSubject, used: int) -> None:
    sync_redis().set(counter_key(subject.user_id, subject.period_start_at), used)


def used_of(subject: QuotaSubject) -> int | None:
    value = sync_redis().get(counter_key(subject.user_id, subject.period_start_at))
    return None if value is None else int(value)


def fill(key: str, count: int, score: int) -> list[str]:
    """`count` members scored `score` in the sorted set `key` (a window or a slot set)."""
    members = [f"earlier-{n}" for n in range(count)]
    sync_redis().zadd(key, dict.fromkeys(members, score))
    return members


def members(key: str) -> set[str]:
    return set(sync_redis().zrange(key, 0, -1))


async def start(
    subject: QuotaSubject,
    durable: DurableCount | None = None,
    generation_id: uuid.UUID | None = None,
) -> Grant:
    return await admit(
        redis_client(), subject, generation_id or uuid.uuid4(), durable or DurableCount()
    )


@pytest.fixture
def subject() -> QuotaSubject:
    return make_subject()


def assert_nothing_reserved(subject: QuotaSubject, used: int, pool: int = 0) -> None:
    assert used_of(subject) == used
    assert not sync_redis().exists(window_key(subject))
    assert not sync_redis().exists(user_key(subject.user_id))
    assert sync_redis().zcard(POOL_KEY) == pool


# --- admitted ----------------------------------------------------------------


async def test_an_admitted_request_reserves_quota_rate_and_slots(subject: QuotaSubject) -> None:
    generation_id = uuid.uuid4()
    durable = DurableCount(7)
    before = redis_now_ms()
    grant = await admit(redis_client(), subject, generation_id, durable)
    after = redis_now_ms()

    # Redis had no counter: it was seeded from the durable count (7), then spent once.
    assert durable.calls == 1
    assert grant.request_id == str(generation_id)
    assert grant.used == 8
    assert used_of(subject) == 8
    ttl = sync_redis().ttl(counter_key(subject.user_id, subject.period_start_at))
    expected_ttl = RESET_IN.total_seconds() + COUNTER_GRACE_SECONDS
    assert expected_ttl - 10 <= ttl <= expected_ttl

    # One slot of the per-minute window, scored by Redis' clock.
    [(member, score)] = sync_redis().zrange(window_key(subject), 0, -1, withscores=True)
    assert member == str(generation_id)
    assert before <= score <= after

    # A streaming slot in the pool and in the user's own set, expiring after the
    # generation timeout plus a minute.
    slot_ms = (settings.generation_timeout_seconds + 60) * 1000
    for key in (POOL_KEY, user_key(subject.user_id)):
        [(member, expires)] = sync_redis().zrange(key, 0, -1, withscores=True)
        assert member == str(generation_id)
        assert before + slot_ms <= expires <= after + slot_ms

    # The window was empty: a slot frees a whole window from now.
    assert grant.headers == {
        "X-RateLimit-Limit": str(subject.rpm),
        "X-RateLimit-Remaining": str(subject.rpm - 1),
        "X-RateLimit-Reset": "60",
    }


async def test_later_requests_count_on_without_asking_for_the_durable_count(
    subject: QuotaSubject,
) -> None:
    durable = DurableCount(7)
    grants = [await start(subject, durable) for _ in range(3)]
    assert durable.calls == 1
    assert [grant.used for grant in grants] == [8, 9, 10]
    assert [grant.headers["X-RateLimit-Remaining"] for grant in grants] == [
        str(subject.rpm - n) for n in (1, 2, 3)
    ]
    # The oldest slot frees in at most a minute (it may already be a few ms closer).
    assert grants[-1].headers["X-RateLimit-Reset"] in {"59", "60"}
    assert len(members(window_key(subject))) == 3
    assert sync_redis().zcard(POOL_KEY) == 3


async def test_the_last_request_of_the_month_is_admitted(subject: QuotaSubject) -> None:
    limit = subject.monthly_limit
    set_used(subject, limit - 1)
    grant = await start(subject)
    assert grant.used == limit
    with pytest.raises(QuotaExceeded):
        await start(subject)
    assert used_of(subject) == limit


# --- the monthly quota -------------------------------------------------------


async def test_over_quota_is_refused_and_reserves_nothing(subject: QuotaSubject) -> None:
    limit = subject.monthly_limit
    set_used(subject, limit)
    durable = DurableCount(0)
    with pytest.raises(QuotaExceeded) as refused:
        await start(subject, durable)
    error = refused.value
    assert (error.status_code, error.code) == (402, "quota_exceeded")
    # Retry when the period renews, ten days from now.
    until_reset = (subject.reset_at - datetime.now(UTC)).total_seconds()
    assert math.ceil(until_reset) <= int(error.headers["Retry-After"]) <= math.ceil(until_reset) + 5
    assert error.headers["X-RateLimit-Remaining"] == "0"
    assert durable.calls == 0
    assert_nothing_reserved(subject, used=limit)


async def test_a_lost_counter_is_seeded_even_when_the_seed_refuses(subject: QuotaSubject) -> None:
    # Redis lost the counter of a user who spent the whole month: the durable count
    # refuses the request, and the counter is back at that count, not one more.
    durable = DurableCount(subject.monthly_limit)
    with pytest.raises(QuotaExceeded):
        await start(subject, durable)
    assert durable.calls == 1
    assert_nothing_reserved(subject, used=subject.monthly_limit)


async def test_concurrent_requests_never_overspend_the_month(subject: QuotaSubject) -> None:
    limit = subject.monthly_limit
    set_used(subject, limit - 5)
    results = await asyncio.gather(*(start(subject) for _ in range(25)), return_exceptions=True)
    grants = [r for r in results if isinstance(r, Grant)]
    refusals = [r for r in results if not isinstance(r, Grant)]
    assert sorted(grant.used for grant in grants) == list(range(limit - 4, limit + 1))
    assert len(refusals) == 20
    assert all(isinstance(r, QuotaExceeded) for r in refusals)
    assert used_of(subject) == limit
    assert len(members(window_key(subject))) == 5
    assert sync_redis().zcard(POOL_KEY) == 5


# --- per-minute rates --------------------------------------------------------


async def test_a_full_window_is_a_rate_refusal_until_its_oldest_slot_frees(
    subject: QuotaSubject,
) -> None:
    set_used(subject, 5)
    # The plan's whole rpm spent 45 s ago: the oldest slot frees in 15 s.
    earlier = fill(window_key(subject), subject.rpm, redis_now_ms() - 45_000)
    with pytest.raises(RateLimited) as refused:
        await start(subject)
    error = refused.value
    assert (error.status_code, error.code) == (429, "rate_limited")
    assert error.headers["Retry-After"] in {"14", "15"}
    assert error.headers == {
        "Retry-After": error.headers["Retry-After"],
        "X-RateLimit-Limit": str(subject.rpm),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": error.headers["Retry-After"],
    }
    # Nothing spent: the count, the window's members and the slots are as they were.
    assert used_of(subject) == 5
    assert members(window_key(subject)) == set(earlier)
    assert not sync_redis().exists(user_key(subject.user_id))
    assert sync_redis().zcard(POOL_KEY) == 0


async def test_the_rpm_th_request_is_admitted_and_the_next_refused(subject: QuotaSubject) -> None:
    # Each admitted request also holds a stream slot: the user's stream limit must not
    # be what refuses first.
    assert subject.rpm <= settings.chat_max_streams_per_user
    grants = [await start(subject) for _ in range(subject.rpm)]
    assert grants[-1].headers["X-RateLimit-Remaining"] == "0"
    with pytest.raises(RateLimited) as refused:
        await start(subject)
    # The oldest slot was taken a moment ago: it frees in about a minute.
    assert refused.value.headers["Retry-After"] in {"59", "60"}
    assert used_of(subject) == subject.rpm
    assert len(members(window_key(subject))) == subject.rpm


async def test_slots_older_than_a_minute_no_longer_count(subject: QuotaSubject) -> None:
    fill(window_key(subject), subject.rpm, redis_now_ms() - WINDOW_MS - 1000)
    generation_id = uuid.uuid4()
    grant = await start(subject, generation_id=generation_id)
    assert grant.headers["X-RateLimit-Remaining"] == str(subject.rpm - 1)
    assert members(window_key(subject)) == {str(generation_id)}


async def test_an_api_keys_own_rate_limit_binds_when_lower() -> None:
    subject = make_subject(api_key_id=uuid.uuid4(), key_rate_limit=2)
    first, second = await start(subject), await start(subject)
    assert [g.headers["X-RateLimit-Limit"] for g in (first, second)] == ["2", "2"]
    assert [g.headers["X-RateLimit-Remaining"] for g in (first, second)] == ["1", "0"]
    with pytest.raises(RateLimited) as refused:
        await start(subject)
    assert refused.value.headers["X-RateLimit-Limit"] == "2"
    assert used_of(subject) == 2
    assert members(key_window_key(subject)) == {first.request_id, second.request_id}

    # The same user without the key: only the plan's rpm, which both requests count in.
    without_key = QuotaSubject(
        user_id=subject.user_id,
        plan=subject.plan,
        period_start_at=subject.period_start_at,
        reset_at=subject.reset_at,
    )
    third = await start(without_key)
    assert third.headers["X-RateLimit-Limit"] == str(subject.rpm)
    assert third.headers["X-RateLimit-Remaining"] == str(subject.rpm - 3)
    assert used_of(subject) == 3
    assert len(members(key_window_key(subject))) == 2


async def test_a_key_limit_above_the_plans_rpm_does_not_raise_it() -> None:
    subject = make_subject(api_key_id=uuid.uuid4(), key_rate_limit=10_000)
    grant = await start(subject)
    assert grant.headers["X-RateLimit-Limit"] == str(subject.rpm)
    assert grant.headers["X-RateLimit-Remaining"] == str(subject.rpm - 1)


# --- streaming capacity ------------------------------------------------------


async def test_a_full_pool_is_a_capacity_refusal_that_reserves_nothing(
    subject: QuotaSubject,
) -> None:
    set_used(subject, 5)
    fill(POOL_KEY, pool_limit(), redis_now_ms() + 600_000)
    with pytest.raises(Unavailable) as refused:
        await start(subject)
    error = refused.value
    assert (error.status_code, error.code) == (503, "unavailable")
    assert error.headers == {"Retry-After": "1"}
    assert_nothing_reserved(subject, used=5, pool=pool_limit())


async def test_one_free_slot_in_the_pool_admits(subject: QuotaSubject) -> None:
    fill(POOL_KEY, pool_limit() - 1, redis_now_ms() + 600_000)
    await start(subject)
    assert sync_redis().zcard(POOL_KEY) == pool_limit()


async def test_expired_slots_free_the_pool(subject: QuotaSubject) -> None:
    # Slots nobody released (a dead worker) expire at their score.
    fill(POOL_KEY, pool_limit(), redis_now_ms() - 1)
    generation_id = uuid.uuid4()
    await start(subject, generation_id=generation_id)
    assert members(POOL_KEY) == {str(generation_id)}


async def test_a_user_at_their_stream_limit_is_refused_and_nothing_is_reserved(
    subject: QuotaSubject,
) -> None:
    set_used(subject, 5)
    per_user = settings.chat_max_streams_per_user
    streams = fill(user_key(subject.user_id), per_user, redis_now_ms() + 600_000)
    with pytest.raises(TooManyStreams) as refused:
        await start(subject)
    error = refused.value
    assert (error.status_code, error.code) == (429, "rate_limited")
    # Judged after the rate limits: their untouched (empty) window goes with it.
    assert error.headers == {
        "Retry-After": "1",
        "X-RateLimit-Limit": str(subject.rpm),
        "X-RateLimit-Remaining": str(subject.rpm),
        "X-RateLimit-Reset": "60",
    }
    assert used_of(subject) == 5
    assert not sync_redis().exists(window_key(subject))
    assert members(user_key(subject.user_id)) == set(streams)
    assert sync_redis().zcard(POOL_KEY) == 0

    # Someone else is not held back by this user's streams.
    await start(make_subject())
    assert sync_redis().zcard(POOL_KEY) == 1


# --- which refusal wins ------------------------------------------------------


async def test_the_quota_is_judged_before_capacity(subject: QuotaSubject) -> None:
    set_used(subject, subject.monthly_limit)
    fill(POOL_KEY, pool_limit(), redis_now_ms() + 600_000)
    with pytest.raises(QuotaExceeded):
        await start(subject)


async def test_the_rate_is_judged_before_capacity(subject: QuotaSubject) -> None:
    fill(window_key(subject), subject.rpm, redis_now_ms() - 1000)
    fill(POOL_KEY, pool_limit(), redis_now_ms() + 600_000)
    fill(user_key(subject.user_id), settings.chat_max_streams_per_user, redis_now_ms() + 600_000)
    with pytest.raises(RateLimited):
        await start(subject)


# --- a stateless completion's opening ----------------------------------------


def opening_for(generation_id: uuid.UUID) -> Opening:
    return Opening(
        stream_key=f"gen:{generation_id}",
        event="start",
        data=f'{{"generation_id":"{generation_id}"}}',
        stream_ttl_seconds=300,
        queue="test-chat-queue",
        task_message='{"task":"workers.chat.generate"}',
        wake_key="relay:wake:test",
        wake_ttl_seconds=3600,
    )


async def test_an_admitted_completion_opens_its_stream_and_queues_its_task(
    subject: QuotaSubject,
) -> None:
    generation_id = uuid.uuid4()
    opening = opening_for(generation_id)
    await admit(redis_client(), subject, generation_id, DurableCount(), opening)
    [(_, fields)] = sync_redis().xrange(opening.stream_key)
    assert fields == {"event": "start", "data": opening.data}
    assert 0 < sync_redis().ttl(opening.stream_key) <= 300
    assert sync_redis().lrange(opening.queue, 0, -1) == [opening.task_message]
    assert sync_redis().xlen(opening.wake_key) == 1
    assert 0 < sync_redis().ttl(opening.wake_key) <= 3600


async def test_a_refused_completion_opens_nothing(subject: QuotaSubject) -> None:
    generation_id = uuid.uuid4()
    opening = opening_for(generation_id)
    fill(POOL_KEY, pool_limit(), redis_now_ms() + 600_000)
    with pytest.raises(Unavailable):
        await admit(redis_client(), subject, generation_id, DurableCount(), opening)
    assert not sync_redis().exists(opening.stream_key, opening.queue, opening.wake_key)
