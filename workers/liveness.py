"""A worker process' companion: keeps `worker:{id}:alive` fresh while the worker lives.

A heartbeat refreshed from inside the worker competes for the GIL with every
generation thread; with hundreds of them it was late by more than its TTL and
relays cut live streams (`worker_lost`). This process shares nothing with the
worker but a pipe: it refreshes the key on its own schedule and, when the pipe
reaches end of file (the worker exited or was killed), deletes the key at once,
so a dead worker's streams end without waiting for the TTL.

Started by `WorkerLiveness` (workers/heartbeat.py) as
`python -m workers.liveness <worker id>`, with the Redis URL on its stdin.
"""

from __future__ import annotations

import os
import select
import sys

import redis

from core.streams import WORKER_ALIVE_INTERVAL_SECONDS, WORKER_ALIVE_TTL_SECONDS, worker_alive_key


def watch(worker_id: str, url: str, pipe: int) -> None:
    client = redis.Redis.from_url(url, socket_timeout=WORKER_ALIVE_INTERVAL_SECONDS)
    key = worker_alive_key(worker_id)
    while True:
        try:
            client.set(key, "1", ex=WORKER_ALIVE_TTL_SECONDS)
        except redis.RedisError as exc:
            # Redis away: the next refresh retries; the key's TTL covers the gap.
            sys.stderr.write(f"liveness: refresh failed: {exc}\n")
        readable, _, _ = select.select([pipe], [], [], WORKER_ALIVE_INTERVAL_SECONDS)
        if readable and not os.read(pipe, 1):
            break
    try:
        client.delete(key)
    except redis.RedisError as exc:
        sys.stderr.write(f"liveness: delete failed, the key expires instead: {exc}\n")


def main() -> None:
    url = sys.stdin.readline().strip()
    watch(sys.argv[1], url, sys.stdin.fileno())


if __name__ == "__main__":
    main()
