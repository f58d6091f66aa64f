"""Taking a generation for this delivery, so only one ever reaches the provider: a
conversation turn in PostgreSQL (its row, which the API wrote, leaves `queued`), a
stateless completion in Redis (the API starts it without PostgreSQL)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from celery.utils.log import get_task_logger
from sqlalchemy import update

from core.celery_app import celery_app
from core.config import settings
from core.db import worker_session
from core.lifecycle import CLAIM, FAIL
from core.redis import sync_redis
from core.streams import CLAIM_SCRIPT, ERROR, claim_key, heartbeat_key
from models import Generation
from workers.generation.persistence import (
    DISCARDED,
    CompletionRow,
    Discarded,
    Unstorable,
    store_completion,
)
from workers.generation.request import build_call
from workers.generation.stream_writer import publish_terminal
from workers.heartbeat import HEARTBEAT_TTL, liveness
from workers.providers.base import ProviderCall

log = get_task_logger(__name__)

NEVER_STARTED = ("worker_lost", "No worker started this generation in time; try again.")
# Outlives the broker's redelivery of an unacknowledged task, which it must stop.
_CLAIM_TTL = celery_app.conf.broker_transport_options["visibility_timeout"] + 60


@dataclass
class Claim:
    """A generation this delivery took, its heartbeat key naming this process."""

    generation: Generation
    # A conversation turn's request, built in its claim's transaction, or the error that
    # stopped it, raised by `call` once the claim is committed and the error can be stored.
    prepared: ProviderCall | Exception | None = None
    row: CompletionRow = field(default_factory=CompletionRow)

    def call(self) -> ProviderCall:
        if isinstance(self.prepared, Exception):
            raise self.prepared
        if self.prepared is not None:
            return self.prepared
        with worker_session() as session:
            return build_call(session, self.generation)


def claim_turn(generation_id: str) -> Claim | None:
    """Take a queued conversation generation; None if another delivery did or it ended."""
    # Before the claim: a relay must never see a running generation without a heartbeat.
    named = liveness.add(generation_id)
    claim = _claim_row(uuid.UUID(generation_id))
    if claim is not None and not named:
        # A delivery lost before its claim left its key, naming a dead worker.
        liveness.add(generation_id, claimed=True)
    elif claim is None and named:
        # Another delivery may be running it: leave its heartbeat key alone.
        liveness.remove(generation_id)
    return claim


def _claim_row(generation_id: uuid.UUID) -> Claim | None:
    """Claim the row and build its provider request in the same transaction: one commit
    before the provider is called. A request that cannot be built (its model config
    deleted, ...) comes back as the error, for the caller to raise once the claim is
    committed and it can be stored."""
    with worker_session() as session:
        generation = session.scalars(
            update(Generation)
            .where(Generation.id == generation_id, CLAIM.where(Generation.status))
            .values(
                status=CLAIM.target,
                started_at=datetime.now(UTC),
                attempts=Generation.attempts + 1,
            )
            .returning(Generation)
        ).one_or_none()
        if generation is None:
            return None
        try:
            return Claim(generation, build_call(session, generation))
        # Any failure to build the request is kept, not hidden: `Claim.call` raises it after
        # the claim is committed, and the task stores the generation as failed with it.
        except Exception as exc:
            return Claim(generation, exc)


def claim_completion(generation_id: str, spec: dict) -> Claim | None:
    """Take a stateless completion: claimed in Redis, so no transaction stands before its
    first token; its row, built here from the task message, is stored once that token is
    out (CompletionRow). A redelivered task finds the claim and stops, as `claim_turn`
    does. One that waited past the generation timeout (no worker for that long) is
    stored failed, never run late."""
    user_id = uuid.UUID(spec["user_id"])
    if not _claim_in_redis(generation_id, user_id):
        return None
    now = datetime.now(UTC)
    queued_at = datetime.fromisoformat(spec["queued_at"])
    generation = Generation(
        id=uuid.UUID(generation_id),
        user_id=user_id,
        api_key_id=uuid.UUID(spec["api_key_id"]) if spec["api_key_id"] else None,
        kind=spec["kind"],
        provider=spec["provider"],
        model=spec["model"],
        request=spec["request"],
        queued_at=queued_at,
        attempts=1,
        # Claimed in Redis above: its row starts where a claim leads.
        status=CLAIM.target,
        started_at=now,
    )
    if queued_at >= now - timedelta(seconds=settings.generation_timeout_seconds):
        return Claim(generation, row=CompletionRow(generation))
    _end_never_started(generation)
    return None


def _claim_in_redis(generation_id: str, user_id: uuid.UUID) -> bool:
    """Take the completion and name this process in its heartbeat key, in one round trip
    (core/streams.py CLAIM_SCRIPT)."""
    keys = (claim_key(generation_id), heartbeat_key(generation_id))
    args = (str(user_id), liveness.alive_id(), _CLAIM_TTL, HEARTBEAT_TTL)
    return bool(sync_redis().eval(CLAIM_SCRIPT, 2, *keys, *args))


def _end_never_started(generation: Generation) -> None:
    gen_id = str(generation.id)
    generation.status, generation.finished_at = FAIL.target, datetime.now(UTC)
    generation.error_code, generation.error = NEVER_STARTED
    data = {"code": NEVER_STARTED[0], "message": NEVER_STARTED[1]}
    try:
        store_completion(generation)
    except Discarded:
        data = DISCARDED
    except Unstorable as exc:
        # Its row is refused, but the client still hears why it never ran.
        log.warning("completion row refused", extra={"generation_id": gen_id, "error": str(exc)})
    publish_terminal(gen_id, ERROR, data, generation.user_id)
    liveness.remove(gen_id)
