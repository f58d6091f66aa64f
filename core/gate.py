"""The one Redis round trip that lets a generation start.

A Lua script judges the contractual limits first (core/quota.py: the monthly
quota is a 402, the plan's rpm and the key's `rate_limit` a 429 with
`X-RateLimit-*`), then capacity (core/admission.py: a full chat pool is a 503,
a user at their own stream limit a 429), and only when everything passes does
it reserve the request and the streaming slot together: a capacity refusal
spends no quota and a quota refusal takes no slot. A stateless completion also
hands the script its first stream entry and its Celery task message, so
admitting it, opening its stream and queueing its task are one round trip.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from core.admission import (
    CAPACITY_CHECK_LUA,
    CAPACITY_TAKE_LUA,
    POOL_FULL,
    USER_FULL,
    capacity_args,
    capacity_keys,
    pool_limit,
    pool_view,
    refuse,
)
from core.quota import (
    NEEDS_SEED,
    QUOTA_CHECK_LUA,
    QUOTA_TAKE_LUA,
    Grant,
    QuotaSubject,
    outcome,
    quota_args,
    quota_keys,
    window_headers,
)
from core.streams import Opening, open_lua

# An admitted generation's stream (core/streams.py `Opening`) from KEYS[6] and ARGV[11];
# KEYS[6] is '' when there is none to open.
OPENING_KEYS, OPENING_ARGS = 6, 11
OPEN_LUA = f"if KEYS[{OPENING_KEYS}] ~= '' then{open_lua(OPENING_KEYS, OPENING_ARGS)}end\n"

START_SCRIPT = (
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
    + QUOTA_CHECK_LUA
    + CAPACITY_CHECK_LUA
    + QUOTA_TAKE_LUA
    + CAPACITY_TAKE_LUA
    + OPEN_LUA
    + "return {0, used, limit, remaining - 1, wait, in_pool + 1}\n"
)
# EVALSHA spares sending the script's text with every request.
START_SHA = hashlib.sha1(START_SCRIPT.encode()).hexdigest()


async def admit(
    store: aioredis.Redis,
    subject: QuotaSubject,
    generation_id: uuid.UUID,
    load_used: Callable[[], Awaitable[int]],
    opening: Opening | None = None,
) -> Grant:
    """Reserve one request and one streaming slot for `generation_id`, or raise
    402/429 (quota, rate limits, the user's streams) or 503 (the pool is full).

    `load_used` reads the durable count of the subject's period; it runs only when
    Redis lost the counter. The generation id is the reservation's id, so a refund
    gives back exactly its rate-window slots."""
    request_id = str(generation_id)
    keys = [*quota_keys(subject), *capacity_keys(subject.user_id), "", "", ""]
    tail: list[str | int] = ["", "", 0, "", 0]
    if opening is not None:
        keys[OPENING_KEYS - 1 :] = opening.keys()
        tail = opening.args()
    seed = -1
    while True:
        args = [*quota_args(subject, request_id, seed), *capacity_args(), *tail]
        try:
            reply = await store.evalsha(START_SHA, len(keys), *keys, *args)
        except NoScriptError:
            reply = await store.eval(START_SCRIPT, len(keys), *keys, *args)
        if int(reply[0]) != NEEDS_SEED or seed >= 0:
            break
        seed = await load_used()
    status = int(reply[0])
    if status == 0:
        pool_view.observe(int(reply[5]))
    else:
        pool_view.observe(pool_limit() if status == POOL_FULL else None)
    if status in (POOL_FULL, USER_FULL):
        limit, remaining, wait_ms = (int(x) for x in reply[1:4])
        refuse(status, window_headers(limit, remaining, wait_ms))
    return outcome(subject, request_id, reply)
