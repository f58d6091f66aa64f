"""The flush clock of a chat worker process: the Redis writes of all its streams, in one
script call per tick.

Every DELTA_FLUSH_SECONDS, whatever each stream holds (workers/generation/stream_writer.py)
is appended to its `gen:{id}` and its cancel flag read, for all streams in one script
call. A write that cannot wait for the tick (a first token, a stream's end, text past
DELTA_FLUSH_CHARS) asks for one now; those that come while a call is in flight go out
together in the next. One call per tick instead of a pipeline per stream and interval
costs the worker, Redis and the API's stream hub (whose reads wake once per call rather
than once per stream) a fraction of what they did (README, "Benchmark").
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from core.redis import loop_redis
from core.streams import DELTA_FLUSH_SECONDS, encode
from workers.event_loop import loop_local

if TYPE_CHECKING:
    from workers.generation.stream_writer import StreamWriter

Piece = tuple[str, dict[str, Any]]

# One command a tick, not two per stream: redis-py's cost is per command (packing, a
# timeout around each reply), far more than Redis's own. KEYS: each stream and its
# cancel flag; ARGV: for each stream, its count of entries, then each entry's event and
# data. Replies each stream's flag, read after its entries are in.
WRITE_SCRIPT = """
local flags = {}
local at = 1
for i = 1, #KEYS, 2 do
  local count = tonumber(ARGV[at])
  at = at + 1
  for _ = 1, count do
    redis.call('XADD', KEYS[i], '*', 'event', ARGV[at], 'data', ARGV[at + 1])
    at = at + 2
  end
  flags[#flags + 1] = redis.call('EXISTS', KEYS[i + 1])
end
return flags
"""


class StreamWrites:
    def __init__(self, redis: aioredis.Redis, interval: float = DELTA_FLUSH_SECONDS) -> None:
        self._redis = redis
        self._script = redis.register_script(WRITE_SCRIPT)
        self._interval = interval
        self._writers: set[StreamWriter] = set()
        # Writes asked for now, and who waits for each.
        self._now: list[tuple[StreamWriter, asyncio.Future[None] | None]] = []
        self._asked = asyncio.Event()
        self._clock: asyncio.Task[None] | None = None

    def add(self, writer: StreamWriter) -> None:
        """Flush `writer` on every tick until it is discarded."""
        self._writers.add(writer)
        self._run()

    def discard(self, writer: StreamWriter) -> None:
        self._writers.discard(writer)

    def ask(self, writer: StreamWriter, done: asyncio.Future[None] | None = None) -> None:
        """Write what `writer` holds in the next call, not at the next tick; the cancel
        flag found lands on `writer.cancelled`, a failure on `writer.failure` (and on
        `done`, when given, which that call resolves)."""
        self._now.append((writer, done))
        self._asked.set()
        self._run()

    async def write_now(self, writer: StreamWriter) -> None:
        """`ask`, and wait for that call; its failure is raised."""
        done = asyncio.get_running_loop().create_future()
        self.ask(writer, done)
        await done

    def _run(self) -> None:
        if self._clock is None:
            self._clock = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self._interval
        try:
            while self._writers or self._now:
                wait = due - loop.time()
                if not self._now and wait > 0:
                    self._asked.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._asked.wait()
                asked, self._now = self._now, []
                batch = {writer for writer, _ in asked}
                if loop.time() >= due:
                    batch.update(writer for writer in self._writers if writer.deltas.held)
                    due = loop.time() + self._interval
                if batch:
                    await self._send(batch)
                for writer, done in asked:
                    if done is None or done.done():
                        continue
                    if writer.failure is not None:
                        done.set_exception(writer.failure)
                    else:
                        done.set_result(None)
        finally:
            self._clock = None

    async def _send(self, batch: set[StreamWriter]) -> None:
        writers = list(batch)
        try:
            keys: list[str] = []
            args: list[str | int] = []
            for writer in writers:
                pieces = writer.deltas.take()
                keys += (writer.key, writer.flag)
                args.append(len(pieces))
                for event, data in pieces:
                    fields = encode(event, data)
                    args += (fields["event"], fields["data"])
            flags = await self._script(keys=keys, args=args, client=self._redis)
        # Not hidden: each stream of the batch raises it (its generation then fails with
        # it); caught whatever it is, since a clock that died would leave them all waiting.
        except Exception as exc:
            for writer in writers:
                writer.failure = exc
            return
        for writer, flagged in zip(writers, flags, strict=True):
            if flagged:
                writer.cancelled = True


@loop_local
def stream_writes() -> StreamWrites:
    return StreamWrites(loop_redis())
