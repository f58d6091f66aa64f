"""Beat jobs for monthly quotas: `workers.quotas.sync` copies Redis counters to
PostgreSQL (and back when Redis lost them), `workers.quotas.reset` starts a new
period for every user whose period has ended."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

from celery.utils.log import get_task_logger
from sqlalchemy import bindparam, extract, func, select, update

from core.api_keys import user_key_cache_entries
from core.celery_app import celery_app
from core.db import worker_session
from core.quota import (
    COUNTER_KEY_PREFIX,
    counter_key,
    counter_ttl_seconds,
    next_period,
    parse_counter_key,
)
from core.redis import sync_redis
from models import User

log = get_task_logger(__name__)

BATCH = 1000
# A user's two period columns are set together (core/quota.py `ensure_period`, and a new
# user's row), and the queries below pick rows by quota_reset_at: both are set in them.
PeriodRow = tuple[uuid.UUID, datetime, datetime]
SeedRow = tuple[uuid.UUID, datetime, datetime, int]


@celery_app.task(name="workers.quotas.sync")
def sync_quotas() -> dict[str, int]:
    """Copy every live counter to `users.quota_used`, then re-seed counters Redis lost.

    A counter only ever lands on the period it belongs to, so a sync racing the
    monthly reset cannot carry last month's count into the new period.
    """
    store = sync_redis()
    keys = list(store.scan_iter(match=f"{COUNTER_KEY_PREFIX}*", count=BATCH))
    synced = 0
    for offset in range(0, len(keys), BATCH):
        chunk = keys[offset : offset + BATCH]
        rows = []
        for key, value in zip(chunk, store.mget(chunk), strict=True):
            if value is None:
                continue
            user_id, epoch = parse_counter_key(key)
            rows.append({"owner": user_id, "epoch": epoch, "used": int(value)})
        if rows:
            statement = (
                update(User)
                .where(
                    User.id == bindparam("owner"),
                    func.floor(extract("epoch", User.quota_period_start_at)) == bindparam("epoch"),
                    User.quota_used != bindparam("used"),
                )
                .values(quota_used=bindparam("used"), updated_at=User.updated_at)
            )
            with worker_session() as session:
                synced += session.connection().execute(statement, rows).rowcount
    seeded = _reseed_missing(store)
    if synced or seeded:
        log.info("quota sync: %d users updated, %d counters re-seeded", synced, seeded)
    return {"synced": synced, "seeded": seeded}


def _reseed_missing(store) -> int:
    """Counters absent from Redis (restart, flush) come back from PostgreSQL, not from zero."""
    now = datetime.now(UTC)
    seeded = 0
    last_id: uuid.UUID | None = None
    while True:
        query = (
            select(User.id, User.quota_period_start_at, User.quota_reset_at, User.quota_used)
            .where(User.quota_used > 0, User.quota_reset_at > now)
            .order_by(User.id)
            .limit(BATCH)
        )
        if last_id is not None:
            query = query.where(User.id > last_id)
        with worker_session() as session:
            users = session.execute(query).all()
        if not users:
            return seeded
        with store.pipeline(transaction=False) as pipe:
            for user_id, start, reset_at, used in cast(Sequence[SeedRow], users):
                pipe.set(
                    counter_key(user_id, start), used, ex=counter_ttl_seconds(reset_at), nx=True
                )
            seeded += sum(1 for result in pipe.execute() if result)
        last_id = users[-1][0]


@celery_app.task(name="workers.quotas.reset")
def reset_quotas() -> int:
    """Start a fresh period for each user whose period ended; a second run finds nobody due."""
    store = sync_redis()
    total = 0
    while True:
        now = datetime.now(UTC)
        with worker_session() as session:
            due = session.execute(
                select(User.id, User.quota_period_start_at, User.quota_reset_at)
                .where(User.quota_reset_at <= now)
                .order_by(User.quota_reset_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            if not due:
                break
            periods = [
                (user_id, old_start, *next_period(old_start, reset_at, now))
                for user_id, old_start, reset_at in cast(Sequence[PeriodRow], due)
            ]
            session.execute(
                update(User),
                [
                    {
                        "id": user_id,
                        "quota_period_start_at": start,
                        "quota_reset_at": reset_at,
                        "quota_used": 0,
                    }
                    for user_id, _, start, reset_at in periods
                ],
            )
            key_entries = user_key_cache_entries(session, [row[0] for row in due])
        # After the commit: cached API keys still name the old period, and its counter is done.
        stale = [counter_key(user_id, old_start) for user_id, old_start, _, _ in periods]
        stale += key_entries
        store.delete(*stale)
        total += len(due)
    if total:
        log.info("monthly quota reset for %d users", total)
    return total
