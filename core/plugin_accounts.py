"""Plug-in-api account rules shared by the API and the workers.

Statuses, the retry schedule of provisioning, the statement that gives users
their `pending` row, and the Redis keys where the last use of a key waits to be
flushed to PostgreSQL.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.dml import ReturningInsert

from core.config import settings
from models import PluginAccount, User

PluginAccountStatus = Literal["pending", "active", "failed"]
PENDING: Final = "pending"
ACTIVE: Final = "active"
FAILED: Final = "failed"

# Hash user_id -> ISO timestamp of the last proxied call; the beat job moves it to PostgreSQL.
LAST_USED_KEY = "plugin:last_used"
# Where the flush job parks the hash while writing it, so new uses land in a fresh one.
LAST_USED_FLUSHING_KEY = "plugin:last_used:flushing"
# Long enough to outlive any outage of PostgreSQL that made a commit fail.
JOURNAL_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class UsableAccount:
    """What a call with the user's plug-in-api account needs (the key still encrypted)."""

    plugin_user_id: str
    api_key_encrypted: str


def usable(account: PluginAccount | None) -> UsableAccount | None:
    """The account when it may be called with: provisioned (`active`) with its upstream
    user id and key; None while it is missing, pending or failed. The one definition
    for the API's proxy and the workers' plug-in-api chat."""
    if (
        account is None
        or account.status != ACTIVE
        or account.plugin_user_id is None
        or account.api_key_encrypted is None
    ):
        return None
    return UsableAccount(account.plugin_user_id, account.api_key_encrypted)


def provision_journal_key(user_id: uuid.UUID) -> str:
    """Where a freshly created upstream account waits until our commit of it succeeds."""
    return f"plugin:provisioned:{user_id}"


def upstream_user_name(user_id: uuid.UUID) -> str:
    """Our id, not the username: it never changes and leads an operator back to the user."""
    return f"switchboard-{user_id}"


def retry_delay(retries_done: int) -> float:
    """Exponential backoff with equal jitter, so a recovering plug-in-api is not hit in step."""
    ceiling = min(
        settings.plugin_provision_backoff_seconds * 2**retries_done,
        settings.plugin_provision_backoff_max_seconds,
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def insert_pending_accounts(*user_filter: ColumnElement[bool]) -> ReturningInsert[uuid.UUID]:
    """Give every matching user without an account a `pending` one; returns their user ids.

    Built from a SELECT on `users` so a user deleted meanwhile is skipped instead of
    failing the foreign key, and ON CONFLICT so concurrent callers never collide.
    """
    missing = select(func.gen_random_uuid(), User.id).where(
        *user_filter, ~exists().where(PluginAccount.user_id == User.id)
    )
    return (
        insert(PluginAccount)
        .from_select([PluginAccount.id, PluginAccount.user_id], missing)
        .on_conflict_do_nothing(index_elements=[PluginAccount.user_id])
        .returning(PluginAccount.user_id)
    )
