"""The chat worker process' event loop: one asyncio loop, in a thread of its own, runs
the provider stream of every generation this process runs.

Celery stays the queue, the dispatcher and the redelivery mechanism: a generation's
task claims it and stores its end on its own Celery thread, and hands only the
stream in between to this loop, waiting for it on a future (no GIL held while it
waits). Per token, that is one socket read among all of the process' streams
instead of a thread woken per token and queued for the GIL; the Redis writes of
all of them share one script call a tick (workers/generation/stream_batch.py).

`loop_local` gives each loop its own clients (its idle provider connections, an async
Redis client), which must never cross loops; a test's own loop gets its own as well.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


class EventLoopThread:
    """The loop, started with the first coroutine it is given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = uvloop.new_event_loop()
                # A daemon: a worker's warm shutdown waits for its tasks, which wait here.
                threading.Thread(target=loop.run_forever, name="chat-streams", daemon=True).start()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result (or its exception)."""
        return asyncio.run_coroutine_threadsafe(coro, self._running()).result()


event_loop = EventLoopThread()


def loop_local(factory: Callable[[], T]) -> Callable[[], T]:
    """`factory()` once per running event loop."""
    made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get() -> T:
        loop = asyncio.get_running_loop()
        found = made.get(loop)
        if found is None:
            found = made[loop] = factory()
        return found

    return get
