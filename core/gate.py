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
from dataclasses import replace

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from core.admission import (
    CAPACITY_CHECK_LUA,
    CAPACITY_TAKE_LUA,
    POOL_KEY,
    pool_limit,
    pool_view,
    refuse,
    slot_ttl_ms,
    user_key,
)
from core.config import settings
from core.quota import (
    QUOTA_CHECK_LUA,
    QUOTA_TAKE_LUA,
    RATE_WINDOW_MS,
    Grant,
    QuotaSubject,
    counter_key,
    counter_ttl_seconds,
    outcome,
    window_headers,
    window_keys,
)
from core.start_script import StartArgs, StartKeys, StartReply, Verdict, as_list, prelude
from core.streams import OPEN_LUA, Opening

# An admitted generation's opening (core/streams.py), read from the prelude's names;
# `stream_key` is '' when there is none to open.
OPEN_IF_ANY_LUA = f"if stream_key ~= '' then{OPEN_LUA}end\n"

START_SCRIPT = (
    prelude()
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
    + QUOTA_CHECK_LUA
    + CAPACITY_CHECK_LUA
    + QUOTA_TAKE_LUA
    + CAPACITY_TAKE_LUA
    + OPEN_IF_ANY_LUA
    + "return reply{status = ADMITTED, used = used, limit = limit, remaining = remaining - 1,"
    + " wait_ms = wait, in_pool = in_pool + 1}\n"
)
# EVALSHA spares sending the script's text with every request.
START_SHA = hashlib.sha1(START_SCRIPT.encode()).hexdigest()


_NO_OPENING = Opening("", "", "", 0, "", "", "", 0)


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
    user_window_key, key_window_key = window_keys(subject.user_id, subject.api_key_id)
    opened = opening or _NO_OPENING
    keys = as_list(
        StartKeys(
            counter_key=counter_key(subject.user_id, subject.period_start_at),
            user_window_key=user_window_key,
            key_window_key=key_window_key,
            pool_key=POOL_KEY,
            user_slots_key=user_key(subject.user_id),
            stream_key=opened.stream_key,
            queue_key=opened.queue,
            wake_key=opened.wake_key,
        )
    )
    args = StartArgs(
        monthly_limit=subject.monthly_limit,
        plan_rpm=subject.rpm,
        key_rpm=subject.key_rate_limit or 0,
        seed=-1,
        counter_ttl_seconds=counter_ttl_seconds(subject.reset_at),
        request_id=request_id,
        window_ms=RATE_WINDOW_MS,
        pool_limit=pool_limit(),
        user_stream_limit=settings.chat_max_streams_per_user,
        slot_ttl_ms=slot_ttl_ms(),
        start_event=opened.event,
        start_data=opened.data,
        stream_ttl_seconds=opened.stream_ttl_seconds,
        task_message=opened.task_message,
        wake_ttl_seconds=opened.wake_ttl_seconds,
    )
    while True:
        argv = as_list(args)
        try:
            raw = await store.evalsha(START_SHA, len(keys), *keys, *argv)
        except NoScriptError:
            raw = await store.eval(START_SCRIPT, len(keys), *keys, *argv)
        reply = StartReply.parse(raw)
        if reply.status != Verdict.NEEDS_SEED or args.seed >= 0:
            break
        args = replace(args, seed=await load_used())
    if reply.status == Verdict.ADMITTED:
        pool_view.observe(reply.in_pool)
    else:
        pool_view.observe(pool_limit() if reply.status == Verdict.POOL_FULL else None)
    if reply.status in (Verdict.POOL_FULL, Verdict.USER_FULL):
        refuse(reply.status, window_headers(reply.limit, reply.remaining, reply.wait_ms))
    return outcome(subject, request_id, reply)
