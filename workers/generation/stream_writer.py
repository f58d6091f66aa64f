"""The worker's side of `gen:{id}`: the reply's reasoning and deltas, coalesced to bound Redis
operations, each write checking the cancel flag in the same round trip (shared with the
process' other streams); and the terminal event that ends the stream."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from core.admission import release_in
from core.input_rules import storable_text
from core.redis import sync_redis
from core.streams import (
    DELTA,
    DELTA_FLUSH_CHARS,
    DELTA_FLUSH_SECONDS,
    REASONING,
    TERMINAL_SCRIPT,
    cancel_key,
    stream_key,
    terminal_script_args,
)
from models import Generation
from workers.event_loop import event_loop
from workers.generation.outcome import Cancelled, Outcome, ReplyFailed
from workers.generation.stream_batch import stream_writes
from workers.generation.thinking import KeptBlocks
from workers.providers import provider_for
from workers.providers.base import (
    Finish,
    ProviderCall,
    ProviderError,
    Reasoning,
    StreamItem,
    ThinkingBlock,
    Usage,
    stream_with_retry,
)
from workers.providers.tool_calls import ToolCallDelta, assemble, merge_fragment


class DeltaCoalescer:
    """The reply's pieces not yet written, and when to write them: once DELTA_FLUSH_SECONDS
    have passed since the last write, or DELTA_FLUSH_CHARS of text are held.

    Reasoning text, reply text and tool-call fragments are never held together: a piece
    of another kind hands back the held ones to be written first, so the stream keeps
    the provider's order. No I/O: the caller writes the `(event, data)` pairs that
    `take` and the `add_` methods hand back."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        seconds: float = DELTA_FLUSH_SECONDS,
        chars: int = DELTA_FLUSH_CHARS,
    ) -> None:
        self._clock = clock
        self._seconds = seconds
        self._chars = chars
        # The held text and the event it goes out as: `delta` (the reply) or `reasoning`.
        self._text: list[str] = []
        self._text_event = DELTA
        self._text_chars = 0
        self._tool_calls: list[dict[str, Any]] = []
        self._taken_at = clock()

    def add_text(self, text: str) -> tuple[tuple[str, dict[str, Any]], ...]:
        """Hold a reply text delta; the held pieces of another kind, to write before it."""
        return self._add(DELTA, text)

    def add_reasoning(self, text: str) -> tuple[tuple[str, dict[str, Any]], ...]:
        """Hold a piece of reasoning; the held pieces of another kind, to write before it."""
        return self._add(REASONING, text)

    def _add(self, event: str, text: str) -> tuple[tuple[str, dict[str, Any]], ...]:
        switched = self._tool_calls or (self._text and self._text_event != event)
        ready = self.take() if switched else ()
        self._text_event = event
        self._text.append(text)
        self._text_chars += len(text)
        return ready

    def add_tool_call(self, fragment: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
        """Hold a tool-call fragment; the held text, to write before it."""
        ready = self.take() if self._text else ()
        merge_fragment(self._tool_calls, fragment)
        return ready

    def due(self) -> bool:
        return self._text_chars >= self._chars or self._clock() - self._taken_at >= self._seconds

    def take(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        """The held pieces as `(event, data)` pairs, in order; nothing is held after."""
        self._taken_at = self._clock()
        if self._text:
            text = "".join(self._text)
            self._text.clear()
            self._text_chars = 0
            return ((self._text_event, {"content": text}),)
        if self._tool_calls:
            # `content` stays present so clients that only concatenate text never break.
            tool_calls = list(self._tool_calls)
            self._tool_calls.clear()
            return ((DELTA, {"content": "", "tool_calls": tool_calls}),)
        return ()


class StreamWriter:
    """Relays one generation's reply into `gen:{id}` and keeps what it relayed, which is
    also what gets stored. Runs on the chat worker's event loop (workers/event_loop.py)."""

    def __init__(self, generation_id: str) -> None:
        self._key, self._flag = stream_key(generation_id), cancel_key(generation_id)
        self._deltas = DeltaCoalescer()
        self._parts: list[str] = []
        self._reasoning: list[str] = []
        self._blocks: list[dict[str, Any]] = []
        self._fragments: list[dict[str, Any]] = []
        self._usage = Usage()
        self._finish_reason: str | None = None
        self._first_token_at: datetime | None = None

    async def relay(
        self,
        items: AsyncGenerator[StreamItem, None],
        after_first_token: Callable[[], None] | None = None,
    ) -> Outcome:
        """Write `items` to the stream; the reply. Raises Cancelled or ReplyFailed, each
        with the reply so far. The first token (of reasoning or of the reply) is written
        at once; `after_first_token` (blocking: a database write) runs then, on a thread,
        off its path to the client."""
        # Locals: this loop runs once per token.
        deltas, parts, fragments = self._deltas, self._parts, self._fragments
        try:
            async with aclosing(items):
                async for item in items:
                    # Reply text first: by far the most frequent item.
                    if isinstance(item, str):
                        # Dropped here, so the client is relayed exactly what is stored.
                        item = storable_text(item)
                        if not item:
                            continue
                        ready = deltas.add_text(item)
                        if ready:
                            await self._write(ready)
                        parts.append(item)
                    elif isinstance(item, Reasoning):
                        text = storable_text(item.text)
                        if not text:
                            continue
                        ready = deltas.add_reasoning(text)
                        if ready:
                            await self._write(ready)
                        self._reasoning.append(text)
                    elif isinstance(item, ToolCallDelta):
                        ready = deltas.add_tool_call(item.fragment)
                        if ready:
                            await self._write(ready)
                        fragments.append(item.fragment)
                    else:
                        if isinstance(item, Usage):
                            self._usage = item
                        elif isinstance(item, Finish):
                            self._finish_reason = item.reason
                        elif isinstance(item, ThinkingBlock):
                            # Its text came as Reasoning pieces: kept for a later turn only.
                            self._blocks.append(item.block)
                        continue
                    if self._first_token_at is None:
                        self._first_token_at = datetime.now(UTC)
                        await self._write(deltas.take())
                        if after_first_token is not None:
                            await asyncio.to_thread(after_first_token)
                    elif deltas.due():
                        await self._write(deltas.take())
            await self._write(deltas.take())
        except ProviderError as exc:
            # What was already relayed is also what gets stored: write the tail first.
            await stream_writes().write(self._key, deltas.take())
            raise ReplyFailed(exc, self.outcome()) from exc
        return self.outcome()

    def outcome(self) -> Outcome:
        return Outcome(
            "".join(self._parts),
            self._usage,
            self._first_token_at,
            assemble(self._fragments),
            self._finish_reason,
            reasoning="".join(self._reasoning),
            thinking_blocks=list(self._blocks),
        )

    async def _write(self, pieces: tuple[tuple[str, dict[str, Any]], ...]) -> None:
        # The pieces and the cancel-flag check in one round trip, shared with other streams.
        if await stream_writes().write(self._key, pieces, self._flag):
            raise Cancelled(self.outcome())


def stream_reply(
    generation: Generation,
    call: ProviderCall,
    after_first_token: Callable[[], None] | None = None,
) -> Outcome:
    """Stream the provider's reply into `gen:{id}` on this process' event loop, and wait
    for it there (see StreamWriter.relay)."""
    items = stream_with_retry(provider_for(generation.provider), call)
    return event_loop.run(StreamWriter(str(generation.id)).relay(items, after_first_token))


def publish_terminal(
    generation_id: str,
    event: str,
    data: dict,
    user_id: uuid.UUID | None = None,
    kept_blocks: KeptBlocks | None = None,
) -> None:
    """The terminal event; with `user_id`, the streaming slot is released in the same round
    trip, before the event, so a client that reads the end can start its next one at once,
    and `kept_blocks` are kept, before the event too, so the client's next turn finds them."""
    keys, args = terminal_script_args(generation_id, event, data)
    pipe = sync_redis().pipeline(transaction=False)
    if user_id is not None:
        release_in(pipe, user_id, generation_id)
        if kept_blocks is not None:
            kept_blocks.keep_in(pipe, user_id)
    pipe.eval(TERMINAL_SCRIPT, len(keys), *keys, *args)
    pipe.execute()
