"""This worker process' side of liveness: the id it writes into the heartbeat keys of
the generations it runs, and the companion process (workers/liveness.py) it starts
to keep that id's alive key fresh from outside this process' GIL.

Not in workers/liveness.py itself: the companion runs that module as `__main__`, and
this side's settings and Redis client imports would cost it ~0.2 s and ~14 MB.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

from core.config import settings
from core.redis import sync_redis
from core.streams import WORKER_ALIVE_TTL_SECONDS, heartbeat_key, worker_alive_key

# Where `python -m workers.liveness` resolves.
ROOT = Path(__file__).resolve().parents[1]
# Outlives any generation, so a heartbeat key nobody deleted still goes away.
HEARTBEAT_TTL = settings.generation_timeout_seconds + 60


class WorkerLiveness:
    """This process' id in heartbeat keys, and the companion that keeps it alive."""

    def __init__(self) -> None:
        self.worker_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._companion: subprocess.Popen | None = None

    def alive_id(self) -> str:
        """This process' id, with its companion running (started here if it is not), so
        a heartbeat key may name it."""
        with self._lock:
            if self._companion is not None and self._companion.poll() is None:
                return self.worker_id
            # Fresh at once, before the companion's interpreter has started.
            sync_redis().set(worker_alive_key(self.worker_id), "1", ex=WORKER_ALIVE_TTL_SECONDS)
            self._companion = subprocess.Popen(
                [sys.executable, "-m", "workers.liveness", self.worker_id],
                stdin=subprocess.PIPE,
                cwd=ROOT,
            )
            assert self._companion.stdin is not None
            # The URL through the pipe, not argv: it may hold a password. The pipe then
            # stays open; its end of file is what tells the companion this process died.
            self._companion.stdin.write(settings.require_redis_url().encode() + b"\n")
            self._companion.stdin.flush()
            return self.worker_id

    def add(self, generation_id: str, *, claimed: bool = False) -> bool:
        """Name this process in the generation's heartbeat key. Before the claim only if
        no delivery did (a redelivery that loses the claim must leave the running one's
        key alone); once claimed, always. Whether the key now names this process."""
        worker_id = self.alive_id()
        key = heartbeat_key(generation_id)
        return bool(sync_redis().set(key, worker_id, ex=HEARTBEAT_TTL, nx=not claimed))

    def remove(self, generation_id: str) -> None:
        sync_redis().delete(heartbeat_key(generation_id))


liveness = WorkerLiveness()
