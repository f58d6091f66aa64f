"""Beat job for subscriptions: `workers.subscriptions.expire` ends those whose period is
over (the rules are core/subscriptions.py's)."""

from __future__ import annotations

from datetime import UTC, datetime

from celery.utils.log import get_task_logger

from core.celery_app import celery_app
from core.subscriptions import expire_subscriptions

log = get_task_logger(__name__)


@celery_app.task(name="workers.subscriptions.expire")
def expire(now: str | None = None) -> int:
    """`now` (ISO 8601) is the clock the job judges by: the current time unless given,
    so a test or an operator can run it for a given moment."""
    moment = datetime.fromisoformat(now) if now else datetime.now(UTC)
    changed = expire_subscriptions(moment)
    if changed:
        log.info("subscriptions: %d users' plans changed at %s", changed, moment.isoformat())
    return changed
