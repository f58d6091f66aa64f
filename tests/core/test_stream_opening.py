"""The one way a generation's stream opens (core/streams.py `Opening`, `OPEN_LUA`):
on its own (OPEN_SCRIPT, a conversation turn after its commit) and inside the
admission script when the broker is another Redis (no task pushed here). The
admission script's opening with the task is tests/core/test_gate.py's."""

from __future__ import annotations

import uuid
from dataclasses import replace

from core.gate import admit
from core.redis import redis_client, sync_redis
from core.streams import OPEN_SCRIPT, Opening
from tests.core.test_gate import DurableCount, make_subject, opening_for


async def test_the_open_script_opens_a_stream_on_its_own() -> None:
    opening = opening_for(uuid.uuid4())
    keys, args = opening.keys(), opening.args()
    await redis_client().eval(OPEN_SCRIPT, len(keys), *keys, *args)
    [(_, fields)] = sync_redis().xrange(opening.stream_key)
    assert fields == {"event": "start", "data": opening.data}
    assert 0 < sync_redis().ttl(opening.stream_key) <= 300
    assert sync_redis().lrange(opening.queue, 0, -1) == [opening.task_message]
    assert sync_redis().xlen(opening.wake_key) == 1
    assert 0 < sync_redis().ttl(opening.wake_key) <= 3600


async def test_an_opening_without_a_queue_pushes_no_task() -> None:
    generation_id = uuid.uuid4()
    opening: Opening = replace(opening_for(generation_id), queue="")
    await admit(redis_client(), make_subject(), generation_id, DurableCount(), opening)
    [(_, fields)] = sync_redis().xrange(opening.stream_key)
    assert fields == {"event": "start", "data": opening.data}
    assert sync_redis().xlen(opening.wake_key) == 1
    assert not sync_redis().exists("", "test-chat-queue")
