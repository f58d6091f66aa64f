"""`workers.attachments.sweep`: remove uploads that no message refers to after a day.

An image uploaded and never sent (the user changed their mind, the app crashed) would
otherwise be kept forever with nobody to see it. `now` (ISO 8601) lets tests drive the
clock; beat leaves it out.
"""

from __future__ import annotations

from datetime import UTC, datetime

from celery.utils.log import get_task_logger

from core.attachments import attachment_store
from core.celery_app import celery_app
from core.db import worker_session

log = get_task_logger(__name__)


@celery_app.task(name="workers.attachments.sweep", ignore_result=True)
def sweep(now: str | None = None) -> int:
    at = datetime.fromisoformat(now) if now else datetime.now(UTC)
    with worker_session() as session:
        removed = attachment_store.delete_orphans(session, at)
    if removed:
        log.info("orphan attachments removed", extra={"count": removed})
    return removed
