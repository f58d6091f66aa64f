"""Relay a generation's Redis Stream to a client, as an async generator of events.

Reads `gen:{id}` from its start (or after `Last-Event-ID`), never from `$`: a
worker faster than the relay would otherwise lose the first tokens. The reads
themselves are api/streaming/hub.py's, one for all the streams of the process. Ends
after the terminal event, or at once when resumed at or past it. When nothing
arrives, the generation is still running and the worker process its heartbeat key
names is not alive, the relay ends the stream itself with an `error` event (through
the same once-only terminal script the worker uses), so a killed worker never leaves
a client hanging. sse.py, websocket.py and openai_chunks.py format these events
for their clients.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select

from api.streaming.hub import IDLE, StreamUnreadable, Subscription, stream_hub
from api.streaming.sse import PING_FRAME, frame
from core.config import settings
from core.db import async_session_factory
from core.lifecycle import MARK_LOST
from core.redis import StreamEntry, as_entries, redis_client
from core.streams import (
    ERROR,
    TERMINAL_EVENTS,
    TERMINAL_SCRIPT,
    WORKER_ALIVE_SCRIPT,
    WORKER_ALIVE_TTL_SECONDS,
    claim_key,
    decode,
    heartbeat_key,
    stream_id_order,
    stream_key,
    terminal_script_args,
)
from models import Generation

WORKER_LOST = {"code": "worker_lost", "message": "The worker running this generation stopped."}
STREAM_GONE = {"code": "stream_expired", "message": "This generation's stream has expired."}
STREAM_UNREADABLE = {
    "code": "stream_unreadable",
    "message": "This generation's stream cannot be read.",
}


@dataclass(frozen=True)
class StreamEvent:
    """One event; `id` is the stream entry id (None for a keep-alive ping)."""

    id: str | None
    event: str
    data: dict[str, Any]
    # `data` as the stream holds it (JSON), so SSE relays it without encoding it again.
    raw: str | None = None

    @property
    def is_ping(self) -> bool:
        return self.id is None and self.event == "ping"

    def frame(self) -> bytes:
        """The event as one SSE frame (api/streaming/sse.py)."""
        if self.is_ping:
            return PING_FRAME
        data = self.raw.encode() if self.raw is not None else orjson.dumps(self.data)
        return frame(data, self.event, self.id)

    def sse(self) -> str:
        return self.frame().decode()


PING = StreamEvent(None, "ping", {})


async def _worker_alive(generation_id: str) -> bool:
    return bool(await redis_client().eval(WORKER_ALIVE_SCRIPT, 1, heartbeat_key(generation_id)))


async def _worker_lost(generation_id: str) -> bool:
    if await _worker_alive(generation_id):
        return False
    # A stateless completion is claimed in Redis, with its heartbeat in the same step,
    # and may have no row yet: claimed with no live worker is lost.
    if await redis_client().exists(claim_key(generation_id)):
        return True
    async with async_session_factory()() as session:
        status = await session.scalar(
            select(Generation.status).where(Generation.id == uuid.UUID(generation_id))
        )
    # Asked again: a worker names itself in the heartbeat key before it claims, so one
    # that claimed while the status was read is seen now. Only a dead one fails twice.
    return MARK_LOST.permits(status) and not await _worker_alive(generation_id)


async def relay_events(
    generation_id: str,
    last_event_id: str | None = None,
    subscription: Subscription | None = None,
) -> AsyncIterator[StreamEvent]:
    """`subscription`: one taken before the generation's start (see api/streaming/hub.py);
    without it, the relay subscribes and wakes the hub itself. `last_event_id`: a valid
    stream id (core/streams.py), checked by the caller."""
    hub = stream_hub()
    key = stream_key(generation_id)
    # The last entry sent (or the client's); the hub's copy may run ahead of the queue.
    cursor = last_event_id or "0-0"
    try:
        if subscription is None:
            subscription = hub.subscribe(key, cursor)
            async with redis_client().pipeline(transaction=False) as pipe:
                hub.wake_in(pipe)
                if last_event_id is not None:
                    pipe.xrevrange(key, count=1)
                answers = await pipe.execute()
            if last_event_id is not None and _past_the_end(answers[-1], cursor):
                return
        last_output = time.monotonic()
        idle_since = time.monotonic()
        while True:
            batch = await subscription.queue.get()
            if isinstance(batch, StreamUnreadable):
                yield StreamEvent(None, ERROR, STREAM_UNREADABLE)
                return
            if isinstance(batch, Exception):
                raise batch
            if batch != IDLE:
                idle_since = time.monotonic()
                for entry_id, fields in batch:
                    event, data = decode(fields)
                    last_output = time.monotonic()
                    cursor = entry_id
                    yield StreamEvent(entry_id, event, data, fields["data"])
                    if event in TERMINAL_EVENTS:
                        return
                continue
            now = time.monotonic()
            # One read answers both: whether the stream is still there, and whether it
            # ended at or before this relay's cursor (a client resumed past its end).
            last = as_entries(await redis_client().xrevrange(key, count=1))
            if not last:
                yield StreamEvent(None, ERROR, STREAM_GONE)
                return
            if _past_the_end(last, cursor):
                return
            # Silence alone proves nothing (a slow provider); it only prompts the check.
            silent = now - idle_since >= WORKER_ALIVE_TTL_SECONDS
            if silent and await _worker_lost(generation_id):
                keys, args = terminal_script_args(generation_id, ERROR, WORKER_LOST)
                await redis_client().eval(TERMINAL_SCRIPT, len(keys), *keys, *args)
                idle_since = now
                continue
            if now - last_output >= settings.sse_ping_seconds:
                last_output = now
                yield PING
    finally:
        if subscription is not None:
            hub.unsubscribe(subscription)


def _past_the_end(last: list[StreamEntry], cursor: str) -> bool:
    """Whether `last` (XREVRANGE COUNT 1) is the stream's terminal event and `cursor` is
    at or after it: nothing will ever follow the cursor."""
    if not last:
        return False
    entry_id, fields = last[0]
    return fields.get("event") in TERMINAL_EVENTS and stream_id_order(cursor) >= stream_id_order(
        entry_id
    )
