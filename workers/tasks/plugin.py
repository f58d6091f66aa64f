"""Plug-in-api accounts: provisioning with the admin key, the beat re-queue, the last-use flush."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cache

import httpx
import orjson
import redis.exceptions
from celery import Task
from celery.utils.log import get_task_logger
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import OperationalError

from core.celery_app import celery_app
from core.config import settings
from core.crypto import decrypt_secret, encrypt_secret
from core.db import worker_session
from core.plugin_accounts import (
    ACTIVE,
    FAILED,
    JOURNAL_TTL_SECONDS,
    LAST_USED_FLUSHING_KEY,
    LAST_USED_KEY,
    PENDING,
    insert_pending_accounts,
    provision_journal_key,
    retry_delay,
    upstream_user_name,
)
from core.redis import as_hash, as_str, sync_redis
from models import PluginAccount, User

log = get_task_logger(__name__)

REQUEUE_BATCH = 500


class Outcome(Enum):
    DONE = "done"
    RETRY = "retry"


class UpstreamRefused(Exception):
    """plug-in-api answered, but not with an account; retrying will not help."""


@cache
def _http() -> httpx.Client:
    # One pooled client per worker process, shared by its threads (httpx.Client is thread-safe).
    return httpx.Client(
        base_url=settings.plugin_api_base_url,
        timeout=httpx.Timeout(settings.plugin_api_timeout_seconds, connect=5.0),
        follow_redirects=False,
    )


def _create_upstream_user(user_id: uuid.UUID) -> tuple[str, str]:
    """POST /api/users with the admin key; returns (plugin_user_id, api_key).

    Raises httpx.TransportError or httpx.HTTPStatusError (5xx, 429) for transient
    failures and UpstreamRefused for answers that retrying cannot change.
    """
    if not settings.plugin_api_admin_key:
        raise UpstreamRefused("PLUGIN_API_ADMIN_KEY is not set")
    answer = _http().post(
        "/api/users",
        json={"name": upstream_user_name(user_id), "prefer_shared": 0},
        headers={"Authorization": f"Bearer {settings.plugin_api_admin_key}"},
    )
    if answer.status_code >= 500 or answer.status_code == 429:
        answer.raise_for_status()
    if answer.status_code >= 400:
        raise UpstreamRefused(f"plug-in-api refused POST /api/users with {answer.status_code}")
    try:
        data = answer.json()["data"]
        return str(data["user_id"]), str(data["api_key"])
    except (ValueError, KeyError, TypeError):
        raise UpstreamRefused("plug-in-api answered POST /api/users without data") from None


def _read_journal(user_id: uuid.UUID) -> tuple[str, str] | None:
    stored = as_str(sync_redis().get(provision_journal_key(user_id)))
    if stored is None:
        return None
    data = orjson.loads(decrypt_secret(stored))
    return data["plugin_user_id"], data["api_key"]


def _write_journal(user_id: uuid.UUID, plugin_user_id: str, api_key: str) -> None:
    payload = orjson.dumps({"plugin_user_id": plugin_user_id, "api_key": api_key}).decode()
    try:
        sync_redis().set(
            provision_journal_key(user_id), encrypt_secret(payload), ex=JOURNAL_TTL_SECONDS
        )
    except redis.exceptions.RedisError as error:
        # The journal only covers a failed commit; PostgreSQL stays the record, so go on.
        log.warning("provision journal not written for %s: %s", user_id, type(error).__name__)


def _describe(error: Exception) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"plug-in-api answered POST /api/users with {error.response.status_code}"
    if isinstance(error, httpx.TransportError):
        return f"plug-in-api unreachable: {type(error).__name__}"
    return str(error)


def provision_account(user_id: uuid.UUID, final_attempt: bool) -> Outcome:
    """Create the user's plug-in-api account once, however many jobs race for it.

    The row lock is held across the upstream call: a second job skips a locked
    row instead of creating a second upstream user. If the upstream call
    succeeds but our commit fails, the Redis journal hands the account to the
    next attempt instead of a new POST.
    """
    with worker_session() as session:
        session.execute(insert_pending_accounts(User.id == user_id))
    with worker_session() as session:
        account = session.scalars(
            select(PluginAccount)
            .where(PluginAccount.user_id == user_id)
            .with_for_update(skip_locked=True)
        ).first()
        if account is None or account.status == ACTIVE:
            # Locked by a job already at work, active already, or the user is gone.
            return Outcome.DONE
        account.attempts += 1
        try:
            created = _read_journal(user_id) or _create_upstream_user(user_id)
        except (httpx.TransportError, httpx.HTTPStatusError) as error:
            account.last_error = _describe(error)
            account.status = FAILED if final_attempt else PENDING
            log.warning("provisioning %s: %s", user_id, account.last_error)
            return Outcome.DONE if final_attempt else Outcome.RETRY
        except UpstreamRefused as error:
            account.last_error = _describe(error)
            account.status = FAILED
            log.warning("provisioning %s failed: %s", user_id, account.last_error)
            return Outcome.DONE
        plugin_user_id, api_key = created
        _write_journal(user_id, plugin_user_id, api_key)
        account.plugin_user_id = plugin_user_id
        account.api_key_encrypted = encrypt_secret(api_key)
        account.status = ACTIVE
        account.last_error = None
    sync_redis().delete(provision_journal_key(user_id))
    log.info("plug-in-api account active for %s", user_id)
    return Outcome.DONE


@celery_app.task(
    name="workers.plugin.provision",
    bind=True,
    acks_late=True,
    # PostgreSQL lost mid-job: retry; the journal keeps an upstream account made meanwhile.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=None,
)
def provision(self: Task, user_id: str) -> None:
    retries_left = settings.plugin_provision_max_attempts - 1 - self.request.retries
    outcome = provision_account(uuid.UUID(user_id), final_attempt=retries_left <= 0)
    if outcome is Outcome.RETRY:
        raise self.retry(countdown=retry_delay(self.request.retries), max_retries=None)


@celery_app.task(name="workers.plugin.requeue_stuck")
def requeue_stuck() -> int:
    """Queue provisioning for users with no account and accounts stuck pending or failed."""
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.plugin_provision_stuck_seconds)
    with worker_session() as session:
        missing = session.scalars(insert_pending_accounts()).all()
        stuck_ids = (
            select(PluginAccount.id)
            .where(PluginAccount.status.in_((PENDING, FAILED)), PluginAccount.updated_at <= cutoff)
            .order_by(PluginAccount.updated_at)
            .limit(REQUEUE_BATCH)
        )
        # Touching updated_at keeps the next beat run from queuing them again meanwhile.
        stuck = session.scalars(
            update(PluginAccount)
            .where(PluginAccount.id.in_(stuck_ids))
            .values(status=PENDING, updated_at=func.now())
            .returning(PluginAccount.user_id)
        ).all()
    user_ids = {*missing, *stuck}
    for user_id in user_ids:
        provision.apply_async(args=[str(user_id)])
    if user_ids:
        log.info("queued plug-in-api provisioning for %d users", len(user_ids))
    return len(user_ids)


@celery_app.task(name="workers.plugin.flush_last_used")
def flush_last_used() -> int:
    """Move the last-use times the API keeps in Redis to `plugin_accounts.last_used_at`."""
    store = sync_redis()
    # A parked hash left by a failed run is written first; GREATEST makes rewriting harmless.
    if not store.exists(LAST_USED_FLUSHING_KEY):
        try:
            store.rename(LAST_USED_KEY, LAST_USED_FLUSHING_KEY)
        except redis.exceptions.ResponseError:
            return 0  # nothing used since the last flush
    used = as_hash(store.hgetall(LAST_USED_FLUSHING_KEY))
    rows = [
        {"owner": uuid.UUID(user_id), "used_at": datetime.fromisoformat(used_at)}
        for user_id, used_at in used.items()
    ]
    if rows:
        statement = (
            update(PluginAccount)
            .where(PluginAccount.user_id == bindparam("owner"))
            .values(
                last_used_at=func.greatest(PluginAccount.last_used_at, bindparam("used_at")),
                # A use is not a change of the account; updated_at drives the stuck sweep.
                updated_at=PluginAccount.updated_at,
            )
        )
        with worker_session() as session:
            session.connection().execute(statement, rows)
    store.delete(LAST_USED_FLUSHING_KEY)
    return len(rows)
