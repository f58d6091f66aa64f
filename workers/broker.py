"""kombu's Redis transport with one client for a channel's synchronous commands.

kombu builds a new `redis.Redis` object for each of them: every task a worker
receives and every acknowledgement, ~0.1 ms apiece here (redis-py 8 fills a table of
hundreds of reply callbacks per object), on the path of every generation. A client
over a connection pool is safe to share between threads, so the channel keeps one.
Selected in celeryconfig.py (`broker_transport`); it speaks Redis exactly as kombu's.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    @cached_property
    def _shared_client(self) -> Any:
        return super()._create_client()

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        return self._shared_client


class Transport(kombu_redis.Transport):
    Channel = Channel
