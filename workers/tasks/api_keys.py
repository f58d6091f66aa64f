"""`workers.api_keys.flush_usage`, a beat job: API-key use counters from Redis to
`api_keys` (never written per request)."""

from __future__ import annotations

import uuid
from datetime import datetime

from celery.utils.log import get_task_logger
from sqlalchemy import bindparam, func, update

from core.api_keys import (
    LAST_USED_FLUSHING_KEY,
    LAST_USED_KEY,
    REQUESTS_FLUSHING_KEY,
    REQUESTS_KEY,
)
from core.celery_app import celery_app
from core.db import worker_session
from core.redis import as_hash, sync_redis
from models import ApiKey

log = get_task_logger(__name__)


@celery_app.task(name="workers.api_keys.flush_usage")
def flush_key_usage() -> int:
    """Add the counted uses to `total_requests` and advance `last_used_at`.

    Each hash is renamed aside first, so uses counted during the flush go to a
    fresh hash; a parked hash left by a failed run is written on the next run.
    """
    store = sync_redis()
    for live, parked in (
        (REQUESTS_KEY, REQUESTS_FLUSHING_KEY),
        (LAST_USED_KEY, LAST_USED_FLUSHING_KEY),
    ):
        # Only this job removes `live`, so it cannot vanish between the check and the rename.
        if not store.exists(parked) and store.exists(live):
            store.rename(live, parked)
    counts = as_hash(store.hgetall(REQUESTS_FLUSHING_KEY))
    used_at = as_hash(store.hgetall(LAST_USED_FLUSHING_KEY))
    rows = [
        {
            "key": uuid.UUID(key_id),
            "uses": int(counts.get(key_id, 0)),
            "used_at": datetime.fromisoformat(used_at[key_id]) if key_id in used_at else None,
        }
        for key_id in counts.keys() | used_at.keys()
    ]
    if rows:
        statement = (
            update(ApiKey)
            .where(ApiKey.id == bindparam("key"))
            .values(
                total_requests=ApiKey.total_requests + bindparam("uses"),
                last_used_at=func.greatest(ApiKey.last_used_at, bindparam("used_at")),
            )
        )
        with worker_session() as session:
            session.connection().execute(statement, rows)
        log.info("flushed use counters of %d API keys", len(rows))
    store.delete(REQUESTS_FLUSHING_KEY, LAST_USED_FLUSHING_KEY)
    return len(rows)
