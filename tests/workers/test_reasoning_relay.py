"""A thinking model's stream through the worker's writer (workers/generation/stream_writer.py)
into a real Redis stream, and the thinking blocks kept for stateless tool-use turns
(workers/generation/thinking.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable

from core.redis import sync_redis
from core.streams import decode, stream_key
from workers.generation.stream_writer import StreamWriter, publish_terminal
from workers.generation.thinking import KeptBlocks, blocks_key, restore_blocks
from workers.providers.base import Emit, Finish, Reasoning, StreamItem, ThinkingBlock, Usage
from workers.providers.tool_calls import ToolCallDelta

BLOCK = {"type": "thinking", "thinking": "Two and two make four.", "signature": "sig=="}


def items_of(items: Iterable[StreamItem]) -> Callable[[Emit], Awaitable[None]]:
    """A provider's stream that emits `items`, each in a read of its own."""

    async def stream(emit: Emit) -> None:
        for item in items:
            emit(item)
            await asyncio.sleep(0.001)

    return stream


def events(generation_id: str) -> list[tuple[str, dict]]:
    entries = sync_redis().xrange(stream_key(generation_id))
    return [decode(fields) for _, fields in entries]


async def test_reasoning_goes_out_as_its_own_events_before_the_text_and_is_kept() -> None:
    generation_id = str(uuid.uuid4())
    firsts: list[int] = []
    items = [
        Reasoning("Two and two"),
        Reasoning(" make four."),
        ThinkingBlock(BLOCK),
        "Four",
        ".",
        Finish("stop"),
        Usage(10, 20, cached_tokens=4, reasoning_tokens=12),
    ]
    writer = StreamWriter(generation_id)
    outcome = await writer.relay(items_of(items), lambda: firsts.append(len(events(generation_id))))
    written = events(generation_id)
    # The first reasoning piece is the first token: written at once, the hook after it.
    assert written[0] == ("reasoning", {"content": "Two and two"})
    assert firsts == [1]
    kinds = [event for event, _ in written]
    assert kinds.index("delta") > max(i for i, kind in enumerate(kinds) if kind == "reasoning")
    reasoning = "".join(d["content"] for event, d in written if event == "reasoning")
    text = "".join(d["content"] for event, d in written if event == "delta")
    assert (reasoning, text) == ("Two and two make four.", "Four.")
    assert outcome.reasoning == "Two and two make four."
    assert outcome.text == "Four."
    assert outcome.thinking_blocks == [BLOCK]
    assert outcome.first_token_at is not None
    assert outcome.usage.reasoning_tokens == 12


async def test_reasoning_text_a_database_cannot_hold_is_dropped_before_relaying() -> None:
    generation_id = str(uuid.uuid4())
    outcome = await StreamWriter(generation_id).relay(
        items_of([Reasoning("\x00"), Reasoning("ok"), "x"])
    )
    assert outcome.reasoning == "ok"
    assert [e for e, _ in events(generation_id)] == ["reasoning", "delta"]


def test_a_tool_use_turns_blocks_are_kept_with_the_end_and_restored_by_call_id() -> None:
    user_id = uuid.uuid4()
    generation_id = str(uuid.uuid4())
    calls = [
        {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "toolu_2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    publish_terminal(generation_id, "done", {}, user_id, KeptBlocks(calls, [BLOCK]))
    redis = sync_redis()
    for call in calls:
        assert 0 < redis.ttl(blocks_key(user_id, call["id"])) <= 24 * 3600
    turn = {"role": "assistant", "content": None, "tool_calls": calls[1:]}
    sent = [{"role": "user", "content": "hi"}, turn, {"role": "tool", "content": "4"}]
    restored = restore_blocks(redis, user_id, sent)
    assert restored[1] == {**turn, "thinking_blocks": [BLOCK]}
    assert sent[1] == turn
    # Blocks the client sent back are kept as sent; another user's ids find nothing.
    own = {**turn, "thinking_blocks": [{"type": "redacted_thinking", "data": "x"}]}
    assert restore_blocks(redis, user_id, [own]) == [own]
    assert restore_blocks(redis, uuid.uuid4(), [turn]) == [turn]


async def test_tool_call_fragments_after_reasoning_keep_their_order() -> None:
    generation_id = str(uuid.uuid4())
    fragment = {"index": 0, "id": "call_1", "function": {"name": "now", "arguments": "{}"}}
    outcome = await StreamWriter(generation_id).relay(
        items_of([Reasoning("Which tool?"), ToolCallDelta(fragment), Finish("tool_calls")])
    )
    assert [e for e, _ in events(generation_id)] == ["reasoning", "delta"]
    assert outcome.tool_calls[0]["id"] == "call_1"
