"""Many streams of one process written on its flush clock (workers/generation/stream_batch.py)
into a real Redis: each keeps its own tokens in order, the first at once, and a cancelled
one stops with exactly what its client was sent while its neighbours go on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from core.redis import sync_redis
from core.streams import cancel_key, decode, stream_key
from workers.generation.outcome import Cancelled
from workers.generation.stream_writer import StreamWriter
from workers.providers.base import Emit, Usage


def tokens(tag: str, count: int, delay: float) -> Callable[[Emit], Awaitable[None]]:
    """A provider's stream of `count` tokens, `delay` apart."""

    async def stream(emit: Emit) -> None:
        for index in range(count):
            emit(f"{tag}-{index} ")
            await asyncio.sleep(delay)
        emit(Usage())

    return stream


def written(generation_id: str) -> list[tuple[str, dict]]:
    return [decode(fields) for _, fields in sync_redis().xrange(stream_key(generation_id))]


def text_of(events: list[tuple[str, dict]]) -> str:
    return "".join(data["content"] for event, data in events if event == "delta")


async def test_streams_written_together_each_keep_their_own_tokens_in_order() -> None:
    ids = [str(uuid.uuid4()) for _ in range(20)]
    outcomes = await asyncio.gather(
        *(StreamWriter(gid).relay(tokens(gid[:8], 30, 0.005)) for gid in ids)
    )
    for gid, outcome in zip(ids, outcomes, strict=True):
        expected = "".join(f"{gid[:8]}-{index} " for index in range(30))
        events = written(gid)
        assert outcome.text == text_of(events) == expected
        # The first token went out alone, before the clock's first tick.
        assert events[0] == ("delta", {"content": f"{gid[:8]}-0 "})
        # Held between ticks: far fewer entries than tokens.
        assert len(events) < 15


async def test_a_cancelled_stream_stops_with_what_it_relayed_and_its_neighbour_goes_on() -> None:
    cancelled, neighbour = str(uuid.uuid4()), str(uuid.uuid4())

    async def cancel_soon() -> None:
        await asyncio.sleep(0.15)
        sync_redis().set(cancel_key(cancelled), "1")

    results = await asyncio.gather(
        StreamWriter(cancelled).relay(tokens("c", 200, 0.005)),
        StreamWriter(neighbour).relay(tokens("n", 60, 0.005)),
        cancel_soon(),
        return_exceptions=True,
    )
    stopped = results[0]
    assert isinstance(stopped, Cancelled)
    assert 0 < len(stopped.partial.text) < len("".join(f"c-{i} " for i in range(200)))
    # Stored (the partial) and streamed are the same text.
    assert stopped.partial.text == text_of(written(cancelled))
    assert results[1].text == text_of(written(neighbour)) == "".join(f"n-{i} " for i in range(60))
