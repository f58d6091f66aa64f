"""One XREAD BLOCK per API process for every generation stream its clients relay.

A blocking read per client would cost a Redis connection, a pending command and
a wake-up per stream; here one task reads all the streams being relayed at once
and hands each batch of entries to its subscriber's queue. A new subscription
must interrupt the read in progress: its key is registered first, then an entry
is added to this process's wake stream (which every read includes), in the same
round trip as the generation's `start` entry where there is one (core/gate.py,
api/streaming/start.py). Subscribers of one key may be at different cursors (a
resumed stream beside the original); each gets only what follows its own.

Since one XREAD serves every stream, no stream may fail it for the others: a cursor
is checked before it joins (core/streams.py), a stream Redis still refuses to read
ends only its own subscribers, and an unexpected failure of the loop is logged and
the loop restarted from the cursors, which lose nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Final, Literal, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import KeyT, StreamIdT

from core.redis import StreamEntry, blocking_redis
from core.streams import TERMINAL_EVENTS, parse_stream_id, stream_id_order

log = logging.getLogger("switchboard.stream_hub")

BLOCK_MS = 2000
# Entries per stream per read; more wait for the next read.
READ_COUNT = 200
READ_ATTEMPTS = 4
# A wake stream outlives its process by at most this much.
WAKE_TTL_SECONDS = 3600
# Streams are checked for silence this often, not after every read.
IDLE_SCAN_SECONDS = 0.5
# Queue item telling a subscriber that nothing arrived for BLOCK_MS.
IDLE: Final = "idle"
# Unexpected failures of the loop with no successful read between them: past this many
# the failure is not passing, and the streams waiting on the loop end with it.
FAILURES_IN_A_ROW = 5
RESTART_DELAY_SECONDS = 0.1
# A connect can time out as well as fail (the reader has no timeout once connected).
REDIS_UNREACHABLE = (RedisConnectionError, RedisTimeoutError)

Entry = StreamEntry
# A subscriber's queue item: a batch of entries, IDLE, or the exception that ended the reads.
Queued = list[Entry] | Literal["idle"] | Exception


class StreamUnreadable(Exception):
    """Redis refuses to read this subscription's stream (its key holds something else)."""


@dataclass(eq=False)
class Subscription:
    key: str
    cursor: str
    queue: asyncio.Queue[Queued] = field(default_factory=asyncio.Queue)
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
        # Whether a read succeeded since the loop last (re)started.
        self._read_ok = False

    def subscribe(self, key: str, cursor: str) -> Subscription:
        """Register before the entry that wakes the reader is written (see `wake_in`).
        A client's cursor is checked before it gets here (core/streams.py)."""
        if parse_stream_id(cursor) is None:
            # Redis would refuse the read that serves every other stream as well.
            raise ValueError(f"not a stream id: {cursor[:64]!r}")
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
            self._cursors[key] = min((s.cursor for s in subs), key=stream_id_order)

    def wake_in(self, pipe: AsyncPipeline) -> None:
        pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
        pipe.expire(self.wake_key, WAKE_TTL_SECONDS)

    async def wake(self, store: aioredis.Redis) -> None:
        async with store.pipeline(transaction=False) as pipe:
            self.wake_in(pipe)
            await pipe.execute()

    async def _read(
        self, reader: aioredis.Redis, streams: dict[str, str]
    ) -> list[tuple[str, list[Entry]]]:
        """XREAD BLOCK, retried on a broken connection: the cursors make a retry lose
        nothing, and a pooled connection that predates a Redis restart fails once."""
        for attempt in range(READ_ATTEMPTS):
            try:
                # The reader decodes responses (core/redis.py): keys and entries are str.
                answer = await reader.xread(
                    cast("dict[KeyT, StreamIdT]", streams), block=BLOCK_MS, count=READ_COUNT
                )
                return cast("list[tuple[str, list[Entry]]]", answer)
            except REDIS_UNREACHABLE:
                if attempt == READ_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    async def _run(self) -> None:
        """Keeps `_serve` running while anyone is subscribed. A failure no stream
        explains is logged and the loop restarted, each subscriber still at its cursor;
        one that keeps coming back ends the streams instead of leaving them waiting."""
        failures = 0
        while self._subs:
            self._read_ok = False
            try:
                await self._serve()
            except REDIS_UNREACHABLE as exc:
                # Every retry failed: each relay ends with the error (a 503 where it can).
                self._end_all(exc)
            except Exception as exc:
                failures = 1 if self._read_ok else failures + 1
                if failures >= FAILURES_IN_A_ROW:
                    log.exception(
                        "stream hub failed %d times in a row; ending its %d streams",
                        failures,
                        len(self._subs),
                    )
                    self._end_all(exc)
                    failures = 0
                    continue
                log.exception("stream hub failed; restarting it")
                await asyncio.sleep(RESTART_DELAY_SECONDS * 2**failures)
                # A failure between deliveries may have left a key's read position behind
                # its subscribers' cursors.
                for key in list(self._subs):
                    self._update_cursor(key)

    def _end_all(self, exc: Exception) -> None:
        for subs in self._subs.values():
            for subscription in subs:
                subscription.queue.put_nowait(exc)
        self._subs.clear()
        self._cursors.clear()

    async def _serve(self) -> None:
        reader = blocking_redis()
        idle_scan_at = time.monotonic()
        while self._subs:
            streams = {self.wake_key: "$", **self._cursors}
            try:
                answer = await self._read(reader, streams)
            except ResponseError as exc:
                await self._end_unreadable(reader, streams, exc)
                continue
            self._read_ok = True
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

    async def _end_unreadable(
        self, reader: aioredis.Redis, streams: dict[str, str], error: ResponseError
    ) -> None:
        """Redis refused the whole read for one stream it will not read (a key that holds
        no stream): each stream is read alone, in one round trip, and the subscribers of
        those refused end; the rest are read on. Only this failure costs the extra trip."""
        keys = [key for key in streams if key != self.wake_key]
        async with reader.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.xread({key: streams[key]}, count=1)
            answers = await pipe.execute(raise_on_error=False)
        refused = {
            key: answer
            for key, answer in zip(keys, answers, strict=True)
            if isinstance(answer, ResponseError)
        }
        if not refused:
            # Not one stream's doing (the wake stream, a permission): the loop's failure.
            raise error
        log.warning(
            "unreadable streams end alone: %s",
            "; ".join(f"{key}: {refusal}" for key, refusal in refused.items()),
        )
        for key, refusal in refused.items():
            for subscription in self._subs.pop(key, ()):
                subscription.queue.put_nowait(StreamUnreadable(str(refusal)))
            self._cursors.pop(key, None)

    def _deliver(
        self, subscription: Subscription, entries: list[Entry], now: float, read_from: str | None
    ) -> None:
        if subscription.cursor == read_from:
            # The read started at this subscriber's cursor (the usual case): all is new.
            fresh = entries
        else:
            after = stream_id_order(subscription.cursor)
            if read_from is None or stream_id_order(read_from) > after:
                # Subscribed during the read, behind its start: this batch would skip
                # entries it has not seen; the next read starts at its cursor.
                return
            fresh = [e for e in entries if stream_id_order(e[0]) > after]
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
