"""One XREAD BLOCK per API process for every generation stream its clients relay.

A blocking read per client would cost a Redis connection, a pending command and
a wake-up per stream; here one task reads all the streams being relayed at once
and hands each batch of entries to its subscriber's queue. A new subscription
must interrupt the read in progress: its key is registered first, then an entry
is added to this process's wake stream (which every read includes), in the same
round trip as the generation's `start` entry where there is one (core/gate.py,
api/generations.py). Subscribers of one key may be at different cursors (a
resumed stream beside the original); each gets only what follows its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from functools import cache

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.exceptions import ConnectionError as RedisConnectionError

from core.redis import blocking_redis
from core.streams import TERMINAL_EVENTS

BLOCK_MS = 2000
# Entries per stream per read; more wait for the next read.
READ_COUNT = 200
READ_ATTEMPTS = 4
# A wake stream outlives its process by at most this much.
WAKE_TTL_SECONDS = 3600
# Streams are checked for silence this often, not after every read.
IDLE_SCAN_SECONDS = 0.5
# Queue item telling a subscriber that nothing arrived for BLOCK_MS.
IDLE = "idle"

Entry = tuple[str, dict[str, str]]


def _entry_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class Subscription:
    key: str
    cursor: str
    # Batches of entries, IDLE, or the exception that ended the reads.
    queue: asyncio.Queue[list[Entry] | str | Exception] = field(default_factory=asyncio.Queue)
    last_delivery: float = field(default_factory=time.monotonic)


class StreamHub:
    def __init__(self) -> None:
        self.wake_key = f"relay:wake:{uuid.uuid4().hex}"
        self._subs: dict[str, set[Subscription]] = {}
        # Each key's read position (its slowest subscriber's cursor), kept up to date
        # instead of recomputed for every read: a read happens per batch of entries,
        # and recomputing over hundreds of streams was most of the hub's CPU.
        self._cursors: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, key: str, cursor: str) -> Subscription:
        """Register before the entry that wakes the reader is written (see `wake_in`)."""
        subscription = Subscription(key, cursor)
        self._subs.setdefault(key, set()).add(subscription)
        self._update_cursor(key)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stream-hub")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subs = self._subs.get(subscription.key)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._subs[subscription.key]
            self._update_cursor(subscription.key)

    def _update_cursor(self, key: str) -> None:
        subs = self._subs.get(key)
        if not subs:
            self._cursors.pop(key, None)
        elif len(subs) == 1:
            self._cursors[key] = next(iter(subs)).cursor
        else:
            self._cursors[key] = min((s.cursor for s in subs), key=_entry_id)

    def wake_in(self, pipe: AsyncPipeline) -> None:
        pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
        pipe.expire(self.wake_key, WAKE_TTL_SECONDS)

    async def wake(self, store: aioredis.Redis) -> None:
        async with store.pipeline(transaction=False) as pipe:
            self.wake_in(pipe)
            await pipe.execute()

    async def _read(self, reader: aioredis.Redis, streams: dict[str, str]) -> list:
        """XREAD BLOCK, retried on a broken connection: the cursors make a retry lose
        nothing, and a pooled connection that predates a Redis restart fails once."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return await reader.xread(streams, block=BLOCK_MS, count=READ_COUNT)
            except RedisConnectionError:
                if attempt == READ_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    async def _run(self) -> None:
        reader = blocking_redis()
        idle_scan_at = time.monotonic()
        while self._subs:
            streams = {self.wake_key: "$", **self._cursors}
            try:
                answer = await self._read(reader, streams)
            except RedisConnectionError as exc:
                for subs in list(self._subs.values()):
                    for subscription in subs:
                        subscription.queue.put_nowait(exc)
                self._subs.clear()
                self._cursors.clear()
                return
            now = time.monotonic()
            for key, entries in answer:
                for subscription in list(self._subs.get(key, ())):
                    self._deliver(subscription, entries, now, streams.get(key))
                self._update_cursor(key)
            if now - idle_scan_at < IDLE_SCAN_SECONDS:
                continue
            idle_scan_at = now
            for subs in list(self._subs.values()):
                for subscription in subs:
                    if now - subscription.last_delivery >= BLOCK_MS / 1000:
                        subscription.last_delivery = now
                        subscription.queue.put_nowait(IDLE)

    def _deliver(
        self, subscription: Subscription, entries: list[Entry], now: float, read_from: str | None
    ) -> None:
        if subscription.cursor == read_from:
            # The read started at this subscriber's cursor (the usual case): all is new.
            fresh = entries
        else:
            after = _entry_id(subscription.cursor)
            if read_from is None or _entry_id(read_from) > after:
                # Subscribed during the read, behind its start: this batch would skip
                # entries it has not seen; the next read starts at its cursor.
                return
            fresh = [e for e in entries if _entry_id(e[0]) > after]
        if not fresh:
            return
        subscription.cursor = fresh[-1][0]
        subscription.last_delivery = now
        subscription.queue.put_nowait(fresh)
        if fresh[-1][1].get("event") in TERMINAL_EVENTS:
            # Nothing follows; also frees a subscription whose client never read it.
            self.unsubscribe(subscription)


@cache
def stream_hub() -> StreamHub:
    return StreamHub()
