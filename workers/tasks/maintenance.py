"""`workers.maintenance.sweep_generations`: end generations whose worker is gone.

A running generation whose worker process is not alive (killed, OOM) is lost; a
queued one older than the generation timeout was never picked up. Both are
marked failed, the reply streamed so far is kept as a failed message, and the
stream gets its terminal `error` event (unless a relay already added it). A
stateless completion whose worker died before storing its row is known only to
Redis (its claim and its streaming slot): it gets the same terminal event, which
gives its slot back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from celery.utils.log import get_task_logger
from redis import Redis
from sqlalchemy import or_, select

from core.admission import POOL_KEY
from core.celery_app import celery_app
from core.config import settings
from core.db import worker_session
from core.lifecycle import FAIL, MARK_LOST, MESSAGE_STATUS_AT_END
from core.redis import as_entries, as_strs, sync_redis
from core.streams import (
    DELTA,
    ERROR,
    WORKER_ALIVE_SCRIPT,
    WORKER_ALIVE_TTL_SECONDS,
    claim_key,
    decode,
    heartbeat_key,
    stream_key,
)
from models import Generation, Message
from workers.generation.stream_writer import publish_terminal

log = get_task_logger(__name__)

WORKER_LOST = ("worker_lost", "The worker running this generation stopped; try again.")


def _streamed_text(generation_id: str) -> str:
    entries = as_entries(sync_redis().xrange(stream_key(generation_id)))
    return "".join(
        data["content"]
        for event, data in (decode(fields) for _, fields in entries)
        if event == DELTA
    )


def _unstored_lost(redis: Redis) -> list[tuple[str, uuid.UUID]]:
    """Slot holders claimed as stateless completions whose worker is not alive."""
    holders = as_strs(redis.zrange(POOL_KEY, 0, -1))
    pipe = redis.pipeline(transaction=False)
    for gen_id in holders:
        pipe.get(claim_key(gen_id))
        pipe.eval(WORKER_ALIVE_SCRIPT, 1, heartbeat_key(gen_id))
    answers = pipe.execute()
    return [
        (gen_id, uuid.UUID(user_id))
        for gen_id, user_id, alive in zip(holders, answers[::2], answers[1::2], strict=True)
        if user_id is not None and not alive
    ]


@celery_app.task(name="workers.maintenance.sweep_generations", ignore_result=True)
def sweep_generations() -> int:
    now = datetime.now(UTC)
    redis = sync_redis()
    with worker_session() as session:
        candidates = session.scalars(
            select(Generation)
            .where(
                or_(
                    MARK_LOST.where(Generation.status),
                    Generation.queued_at
                    < now - timedelta(seconds=settings.generation_timeout_seconds),
                ),
                FAIL.where(Generation.status),
            )
            .with_for_update(skip_locked=True)
        ).all()
        ended: list[tuple[str, uuid.UUID]] = []
        for generation in candidates:
            gen_id = str(generation.id)
            # A running one is lost only if its worker is gone; a queued one here waited
            # past the generation timeout.
            ending = MARK_LOST if MARK_LOST.permits(generation.status) else FAIL
            if ending is MARK_LOST and (
                redis.eval(WORKER_ALIVE_SCRIPT, 1, heartbeat_key(gen_id))
                or (generation.started_at or now)
                > now - timedelta(seconds=WORKER_ALIVE_TTL_SECONDS)
            ):
                continue
            text = _streamed_text(gen_id)
            if text and generation.conversation_id is not None:
                message = Message(
                    conversation_id=generation.conversation_id,
                    role="assistant",
                    content=text,
                    status=MESSAGE_STATUS_AT_END[ending.target],
                    model=generation.model,
                )
                session.add(message)
                session.flush()
                generation.assistant_message_id = message.id
            generation.status = ending.target
            generation.error_code, generation.error = WORKER_LOST
            generation.finished_at = now
            ended.append((gen_id, generation.user_id))
    swept = {gen_id for gen_id, _ in ended}
    ended += [lost for lost in _unstored_lost(redis) if lost[0] not in swept]
    for gen_id, user_id in ended:
        # Releases the dead worker's streaming slot too (a relay may have ended the stream).
        publish_terminal(
            gen_id, ERROR, {"code": WORKER_LOST[0], "message": WORKER_LOST[1]}, user_id
        )
    if ended:
        log.warning("swept stuck generations", extra={"count": len(ended)})
    return len(ended)
