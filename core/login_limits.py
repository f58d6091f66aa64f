"""Brute-force protection: attempts per account and per client IP, for password checks
and for redemption codes (each on counters of its own, one mechanism).

An attempt is counted before the password is verified, in one atomic script,
so a burst of concurrent guesses cannot slip past the limit; a successful
attempt gives its count back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from core.config import settings
from core.errors import AppError

# KEYS: account counter, ip counter. ARGV: account limit, ip limit, window seconds.
# Answers 0 when the attempt is allowed (and counted), else the seconds to wait.
_RESERVE_ATTEMPT = """
for i = 1, 2 do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used >= tonumber(ARGV[i]) then
    local ttl = redis.call('TTL', KEYS[i])
    if ttl < 1 then ttl = 1 end
    return ttl
  end
end
for i = 1, 2 do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('EXPIRE', KEYS[i], ARGV[3])
  end
end
return 0
"""

# The account's slate is wiped; the IP's count gives back this attempt without going negative.
_FORGET_ATTEMPT = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class AttemptLimit:
    """One kind of guarded attempt: its Redis key prefix, limits and window."""

    scope: str
    message: str
    per_account: Callable[[], int]
    per_ip: Callable[[], int]
    window_seconds: Callable[[], int]


# Read from settings at call time, so tests and operators can retune them.
LOGIN = AttemptLimit(
    scope="login",
    message="Too many sign-in attempts; try again later.",
    per_account=lambda: settings.login_max_attempts_per_account,
    per_ip=lambda: settings.login_max_attempts_per_ip,
    window_seconds=lambda: settings.login_attempt_window_seconds,
)
REDEEM = AttemptLimit(
    scope="redeem",
    message="Too many wrong redemption codes; try again later.",
    per_account=lambda: settings.redeem_max_attempts_per_account,
    per_ip=lambda: settings.redeem_max_attempts_per_ip,
    window_seconds=lambda: settings.redeem_attempt_window_seconds,
)


def _keys(limit: AttemptLimit, account: str, ip_address: str | None) -> list[str]:
    # Hashed so email addresses never appear in Redis key names.
    digest = hashlib.sha256(account.strip().lower().encode()).hexdigest()[:32]
    return [f"{limit.scope}:acct:{digest}", f"{limit.scope}:ip:{ip_address or 'unknown'}"]


async def reserve_attempt(
    redis: aioredis.Redis, limit: AttemptLimit, account: str, ip_address: str | None
) -> None:
    """Count one attempt, or raise 429 when the account or the IP is over its limit."""
    retry_after = await redis.eval(
        _RESERVE_ATTEMPT,
        2,
        *_keys(limit, account, ip_address),
        limit.per_account(),
        limit.per_ip(),
        limit.window_seconds(),
    )
    if int(retry_after) > 0:
        raise AppError(
            limit.message,
            code="rate_limited",
            status_code=429,
            headers={"Retry-After": str(int(retry_after))},
        )


async def forget_attempts(
    redis: aioredis.Redis, limit: AttemptLimit, account: str, ip_address: str | None
) -> None:
    """A successful attempt: the account's slate is wiped, the IP's count given back."""
    await redis.eval(_FORGET_ATTEMPT, 2, *_keys(limit, account, ip_address))


async def reserve_login_attempt(
    redis: aioredis.Redis, account: str, ip_address: str | None
) -> None:
    """Count one password attempt, or raise 429 when the account or the IP is over its limit."""
    await reserve_attempt(redis, LOGIN, account, ip_address)


async def forget_login_attempts(
    redis: aioredis.Redis, account: str, ip_address: str | None
) -> None:
    await forget_attempts(redis, LOGIN, account, ip_address)
