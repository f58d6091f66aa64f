"""Developer API keys: generation, hashing, authentication through a Redis cache,
and use counters kept in Redis until beat flushes them to PostgreSQL.

A key is `sk-sb-` plus 43 URL-safe random characters (256 bits); only its
SHA-256 and a display prefix are stored. Authentication reads the cache entry
`apikey:auth:{sha256}` (one script that also counts the use: one round trip, no
PostgreSQL), filled from PostgreSQL on a miss. The entry carries what the
OpenAI-compatible routes need of the user (plan, quota period), so they never
load the user. Revoking overwrites the entry with a tombstone instead of deleting it:
a request that read PostgreSQL just before the revoke fills the cache with SET
NX, which cannot overwrite the tombstone, so no replica accepts the key again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from core.errors import Forbidden, Unauthorized
from core.plans import plan_spec
from core.quota import QuotaSubject, ensure_period
from core.security import hash_token
from models import ApiKey, User

KEY_PREFIX = "sk-sb-"
DISPLAY_PREFIX_CHARS = 12
# A cached identity lives this long; revokes and admin plan changes drop it at once.
AUTH_CACHE_TTL_SECONDS = 300
# Unknown keys are remembered briefly so a flood of guesses does not reach PostgreSQL.
UNKNOWN_KEY_TTL_SECONDS = 60
REVOKED = "revoked"
UNKNOWN = "unknown"
# Use counters: hash field = key id. Beat renames them aside, writes them, deletes them.
REQUESTS_KEY = "apikey:requests"
LAST_USED_KEY = "apikey:last_used"
REQUESTS_FLUSHING_KEY = "apikey:requests:flushing"
LAST_USED_FLUSHING_KEY = "apikey:last_used:flushing"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_CHARS]


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def auth_cache_key(key_hash: str) -> str:
    return f"apikey:auth:{key_hash}"


def is_expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    return expires_at is not None and expires_at <= (now or datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: its row and the full key, shown to its owner only once."""

    row: ApiKey
    full_key: str


async def create_api_key(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    name: str,
    description: str | None = None,
    rate_limit: int | None = None,
    expires_in_days: int | None = None,
) -> NewKey:
    """Create and commit a key for the user, or 403 `api_key_limit` when their plan's
    maximum of live keys is reached. Every creator of a key goes through here."""
    # Locking the user row serialises concurrent creates, so the plan's maximum holds;
    # the plan is read under the same lock, so a concurrent plan change cannot slip by.
    plan = await session.scalar(select(User.plan).where(User.id == user_id).with_for_update())
    if plan is None:
        raise Unauthorized("The user no longer exists.", code="token_invalid")
    now = datetime.now(UTC)
    live = await session.scalar(
        select(func.count(ApiKey.id)).where(
            ApiKey.user_id == user_id,
            ApiKey.is_active,
            (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
        )
    )
    limit = plan_spec(plan).max_api_keys
    if (live or 0) >= limit:
        raise Forbidden(
            f"The {plan} plan allows {limit} active API keys; revoke one first.",
            code="api_key_limit",
        )
    full_key = generate_key()
    key = ApiKey(
        user_id=user_id,
        name=name,
        description=description,
        key_hash=hash_token(full_key),
        key_prefix=display_prefix(full_key),
        rate_limit=rate_limit,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        total_requests=0,
        is_active=True,
        created_at=now,
    )
    session.add(key)
    await session.commit()
    return NewKey(row=key, full_key=full_key)


# KEYS: auth cache entry, use counter hash, last-used hash. ARGV: now (epoch s, ISO).
# The entry as stored; a live key's use is counted in the same round trip.
AUTHENTICATE_SCRIPT = """
local entry = redis.call('GET', KEYS[1])
if entry and string.sub(entry, 1, 1) == '{' then
  local e = cjson.decode(entry)
  if type(e.expires_ts) ~= 'number' or e.expires_ts > tonumber(ARGV[1]) then
    redis.call('HINCRBY', KEYS[2], e.key_id, 1)
    redis.call('HSET', KEYS[3], e.key_id, ARGV[2])
  end
end
return entry
"""
AUTHENTICATE_SHA = hashlib.sha1(AUTHENTICATE_SCRIPT.encode()).hexdigest()


async def _cached_entry(store: aioredis.Redis, key_hash: str) -> str | None:
    now = datetime.now(UTC)
    keys = (auth_cache_key(key_hash), REQUESTS_KEY, LAST_USED_KEY)
    try:
        return await store.evalsha(AUTHENTICATE_SHA, 3, *keys, now.timestamp(), now.isoformat())
    except NoScriptError:
        return await store.eval(AUTHENTICATE_SCRIPT, 3, *keys, now.timestamp(), now.isoformat())


async def authenticate_api_key(
    token: str, session: AsyncSession, store: aioredis.Redis
) -> QuotaSubject:
    """The subject a key charges (with the user's plan and period, so routes need no
    user load), or Unauthorized; counts the use in Redis. One round trip once cached."""
    key_hash = hash_token(token)
    cached = await _cached_entry(store, key_hash)
    if cached is None:
        await _load_into_cache(key_hash, session, store)
        cached = await _cached_entry(store, key_hash)
    if cached is None or cached in (REVOKED, UNKNOWN):
        raise Unauthorized("The API key is invalid or revoked.", code="token_invalid")
    entry = json.loads(cached)
    expires_at = datetime.fromisoformat(entry["expires_at"]) if entry["expires_at"] else None
    if is_expired(expires_at):
        raise Unauthorized("The API key has expired.", code="token_expired")
    return QuotaSubject(
        user_id=uuid.UUID(entry["user_id"]),
        plan=entry["plan"],
        period_start_at=datetime.fromisoformat(entry["period_start_at"]),
        reset_at=datetime.fromisoformat(entry["reset_at"]),
        api_key_id=uuid.UUID(entry["key_id"]),
        key_rate_limit=entry["rate_limit"],
    )


async def _load_into_cache(key_hash: str, session: AsyncSession, store: aioredis.Redis) -> None:
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == key_hash)
        )
    ).one_or_none()
    if row is None:
        await store.set(auth_cache_key(key_hash), UNKNOWN, ex=UNKNOWN_KEY_TTL_SECONDS, nx=True)
        return
    key, user = row
    # Only an active user's active key is ever cached as an entry.
    if not key.is_active or not user.is_active:
        await store.set(auth_cache_key(key_hash), REVOKED, ex=AUTH_CACHE_TTL_SECONDS, nx=True)
        return
    await ensure_period(session, user)
    assert user.quota_period_start_at and user.quota_reset_at, "ensure_period ran"
    entry = json.dumps(
        {
            "key_id": str(key.id),
            "user_id": str(user.id),
            "plan": user.plan,
            "rate_limit": key.rate_limit,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            # For the script that counts uses: an expired key's are not counted.
            "expires_ts": key.expires_at.timestamp() if key.expires_at else None,
            "period_start_at": user.quota_period_start_at.isoformat(),
            "reset_at": user.quota_reset_at.isoformat(),
        }
    )
    # Another request may have cached first (or a revoke landed): the stored entry wins.
    await store.set(auth_cache_key(key_hash), entry, ex=AUTH_CACHE_TTL_SECONDS, nx=True)


async def revoke_cached(store: aioredis.Redis, key_hash: str) -> None:
    # Outlives any entry filled before the revoke committed.
    await store.set(auth_cache_key(key_hash), REVOKED, ex=AUTH_CACHE_TTL_SECONDS + 60)


def user_key_cache_entries(session: Session, user_ids: Iterable[uuid.UUID]) -> list[str]:
    """The auth cache entries of these users' keys: what a plan or period change must drop
    (after its commit). Sync, for workers; the API runs it through `forget_user_keys`."""
    ids = list(user_ids)
    if not ids:
        return []
    hashes = session.scalars(select(ApiKey.key_hash).where(ApiKey.user_id.in_(ids))).all()
    return [auth_cache_key(h) for h in hashes]


async def forget_user_keys(
    session: AsyncSession, store: aioredis.Redis, user_id: uuid.UUID
) -> None:
    """Drop the cached entries of a user's keys, e.g. after a plan change."""
    entries = await session.run_sync(user_key_cache_entries, [user_id])
    if entries:
        await store.delete(*entries)


async def pending_use(
    store: aioredis.Redis, key_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, datetime | None]]:
    """Uses counted in Redis and not yet flushed, per key id."""
    ids = list(key_ids)
    if not ids:
        return {}
    fields = [str(i) for i in ids]
    async with store.pipeline(transaction=False) as pipe:
        pipe.hmget(REQUESTS_KEY, fields)
        pipe.hmget(LAST_USED_KEY, fields)
        counts, used_at = await pipe.execute()
    return {
        key_id: (int(count or 0), datetime.fromisoformat(at) if at else None)
        for key_id, count, at in zip(ids, counts, used_at, strict=True)
    }
