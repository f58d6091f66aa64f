"""The Redis writes of every stream a chat worker process relays, pipelined together.

A stream's write (its coalesced pieces, then a check of its cancel flag) waits for the
next pipeline, which carries every write queued since the one before it was sent: one
round trip while it is alone, one for all of them under load. Only one pipeline is in
flight at a time, so a busy process's writes group themselves without a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.maint_notifications import MaintNotificationsConfig

from core.config import settings
from core.redis import COMMAND_TIMEOUT, as_fields
from core.streams import encode
from workers.event_loop import loop_local

Piece = tuple[str, dict[str, Any]]


@dataclass(slots=True)
class _Write:
    stream: str
    pieces: Sequence[Piece]
    # The cancel flag to check after the pieces; '' for none.
    flag: str
    done: asyncio.Future[bool]


class StreamWrites:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._queued: list[_Write] = []
        self._sending: asyncio.Task[None] | None = None

    async def write(self, stream: str, pieces: Sequence[Piece], flag: str = "") -> bool:
        """Append `pieces` to `stream`; whether `flag` is set, read after they are in."""
        done = asyncio.get_running_loop().create_future()
        self._queued.append(_Write(stream, pieces, flag, done))
        if self._sending is None:
            self._sending = asyncio.create_task(self._send())
        return await done

    async def _send(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                pipe = self._redis.pipeline(transaction=False)
                for write in batch:
                    for event, data in write.pieces:
                        pipe.xadd(write.stream, as_fields(encode(event, data)))
                    if write.flag:
                        pipe.exists(write.flag)
                try:
                    replies = await pipe.execute()
                # Not hidden: each stream in the batch gets the error (its generation then
                # fails with it), and the next batch tries again.
                except Exception as exc:
                    for write in batch:
                        if not write.done.done():
                            write.done.set_exception(exc)
                    continue
                position = 0
                for write in batch:
                    position += len(write.pieces)
                    flagged = False
                    if write.flag:
                        flagged = bool(replies[position])
                        position += 1
                    if not write.done.done():
                        write.done.set_result(flagged)
        finally:
            self._sending = None


@loop_local
def stream_writes() -> StreamWrites:
    client = aioredis.Redis.from_url(
        settings.require_redis_url(),
        decode_responses=True,
        socket_timeout=COMMAND_TIMEOUT,
        socket_connect_timeout=COMMAND_TIMEOUT,
        health_check_interval=30,
        # Off, so the pool checks a connection before handing it out: with it on ("auto"),
        # redis-py skips that check, and a write after a Redis restart failed on the dead
        # socket instead of reconnecting.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return StreamWrites(client)
