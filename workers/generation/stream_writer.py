"""The worker's side of `gen:{id}`: the reply's reasoning and deltas, held and written
together with every other stream of the process on one flush clock
(workers/generation/stream_batch.py), each write checking the cancel flag in the same
round trip; and the terminal event that ends the stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from core.admission import release_in
from core.input_rules import storable_text
from core.redis import sync_redis
from core.streams import (
    DELTA,
    DELTA_FLUSH_CHARS,
    REASONING,
    TERMINAL_SCRIPT,
    cancel_key,
    stream_key,
    terminal_script_args,
)
from models import Generation
from workers.event_loop import event_loop
from workers.generation.outcome import Cancelled, Outcome, ReplyFailed
from workers.generation.stream_batch import Piece, StreamWrites, stream_writes
from workers.generation.thinking import KeptBlocks
from workers.providers import provider_for
from workers.providers.base import (
    Emit,
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
    """The reply's pieces not yet written, in the provider's order: a run of reasoning
    text, of reply text or of tool-call fragments is held as one piece, and a piece of
    another kind starts the next one, so the stream keeps the provider's order. When
    they are written is the flush clock's; `full` says the text held is worth a write of
    its own. No I/O."""

    def __init__(self, chars: int = DELTA_FLUSH_CHARS) -> None:
        self._chars = chars
        self._pieces: list[Piece] = []
        # The open run: text and the event it goes out as (`delta` or `reasoning`), or
        # tool-call fragments; never both.
        self._text: list[str] = []
        self._text_event = DELTA
        self._tool_calls: list[dict[str, Any]] = []
        self._held_chars = 0

    def add_text(self, text: str) -> None:
        self._add(DELTA, text)

    def add_reasoning(self, text: str) -> None:
        self._add(REASONING, text)

    def _add(self, event: str, text: str) -> None:
        if self._tool_calls or (self._text and self._text_event != event):
            self._close_run()
        self._text_event = event
        self._text.append(text)
        self._held_chars += len(text)

    def add_tool_call(self, fragment: dict[str, Any]) -> None:
        if self._text:
            self._close_run()
        merge_fragment(self._tool_calls, fragment)

    @property
    def held(self) -> bool:
        return bool(self._pieces or self._text or self._tool_calls)

    def full(self) -> bool:
        return self._held_chars >= self._chars

    def take(self) -> list[Piece]:
        """The held pieces as `(event, data)` pairs, in order; nothing is held after."""
        self._close_run()
        pieces, self._pieces = self._pieces, []
        self._held_chars = 0
        return pieces

    def _close_run(self) -> None:
        if self._text:
            self._pieces.append((self._text_event, {"content": "".join(self._text)}))
            self._text.clear()
        elif self._tool_calls:
            # `content` stays present so clients that only concatenate text never break.
            self._pieces.append((DELTA, {"content": "", "tool_calls": self._tool_calls}))
            self._tool_calls = []


class _Stop(Exception):
    """Raised into the provider's stream to end it: the flush clock found the cancel
    flag, or a write failed."""


class StreamWriter:
    """Relays one generation's reply into `gen:{id}` and keeps what it relayed, which is
    also what gets stored. Runs on the chat worker's event loop (workers/event_loop.py)."""

    def __init__(self, generation_id: str) -> None:
        self.key, self.flag = stream_key(generation_id), cancel_key(generation_id)
        self.deltas = DeltaCoalescer()
        # Set by the flush clock: a write found the cancel flag, or the write failed.
        self.cancelled = False
        self.failure: BaseException | None = None
        self._writes: StreamWrites | None = None
        self._after_first_token: Callable[[], None] | None = None
        self._stored: asyncio.Future[None] | None = None
        self._parts: list[str] = []
        self._reasoning: list[str] = []
        self._blocks: list[dict[str, Any]] = []
        self._fragments: list[dict[str, Any]] = []
        self._usage = Usage()
        self._finish_reason: str | None = None
        self._first_token_at: datetime | None = None

    async def relay(
        self,
        stream: Callable[[Emit], Awaitable[None]],
        after_first_token: Callable[[], None] | None = None,
    ) -> Outcome:
        """Run `stream`, which emits the reply's items into `accept`; the reply. Raises
        Cancelled or ReplyFailed, each with the reply so far, which is all written. The
        first token (of reasoning or of the reply) is written at once, and
        `after_first_token` (blocking: a database write) runs then, on a thread, off the
        stream's path; what it raises ends the stream. The rest waits for the flush
        clock."""
        self._writes = writes = stream_writes()
        self._after_first_token = after_first_token
        writes.add(self)
        try:
            try:
                await stream(self.accept)
            except _Stop:
                pass
            except ProviderError as exc:
                # What was already relayed is also what gets stored: write the tail first.
                await writes.write_now(self)
                await self._row_stored()
                if self.failure is not None:
                    raise self.failure from exc
                raise ReplyFailed(exc, self.outcome()) from exc
            await writes.write_now(self)
            await self._row_stored()
            if self.failure is not None:
                raise self.failure
            if self.cancelled:
                raise Cancelled(self.outcome())
            return self.outcome()
        finally:
            # Whichever way the stream ended: the end is stored next, never before its row.
            await self._row_stored()
            writes.discard(self)

    def accept(self, item: StreamItem) -> None:
        """One item of the provider's stream, as it arrives; runs once per token."""
        if self.cancelled or self.failure is not None:
            raise _Stop
        # Reply text first: by far the most frequent item.
        if isinstance(item, str):
            # Dropped here, so the client is relayed exactly what is stored.
            item = storable_text(item)
            if not item:
                return
            self.deltas.add_text(item)
            self._parts.append(item)
        elif isinstance(item, Reasoning):
            text = storable_text(item.text)
            if not text:
                return
            self.deltas.add_reasoning(text)
            self._reasoning.append(text)
        elif isinstance(item, ToolCallDelta):
            self.deltas.add_tool_call(item.fragment)
            self._fragments.append(item.fragment)
        else:
            if isinstance(item, Usage):
                self._usage = item
            elif isinstance(item, Finish):
                self._finish_reason = item.reason
            elif isinstance(item, ThinkingBlock):
                # Its text came as Reasoning pieces: kept for a later turn only.
                self._blocks.append(item.block)
            return
        assert self._writes is not None
        if self._first_token_at is None:
            self._first_token_at = datetime.now(UTC)
            if self._after_first_token is None:
                self._writes.ask(self)
            else:
                self._stored = asyncio.ensure_future(self._first_write(self._after_first_token))
                self._stored.add_done_callback(self._row_failed)
        elif self.deltas.full():
            self._writes.ask(self)

    async def _first_write(self, after_first_token: Callable[[], None]) -> None:
        assert self._writes is not None
        await self._writes.write_now(self)
        await asyncio.to_thread(after_first_token)

    def _row_failed(self, stored: asyncio.Future[None]) -> None:
        if not stored.cancelled() and stored.exception() is not None:
            self.failure = stored.exception()

    async def _row_stored(self) -> None:
        """Wait for the first write and `after_first_token`: the generation's end must not
        be stored before its row. A failure is raised by the caller, from `failure`."""
        if self._stored is not None:
            await asyncio.wait([self._stored])

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


def stream_reply(
    generation: Generation,
    call: ProviderCall,
    after_first_token: Callable[[], None] | None = None,
) -> Outcome:
    """Stream the provider's reply into `gen:{id}` on this process' event loop, and wait
    for it there (see StreamWriter.relay)."""
    provider = provider_for(generation.provider)

    def stream(emit: Emit) -> Awaitable[None]:
        return stream_with_retry(provider, call, emit)

    return event_loop.run(StreamWriter(str(generation.id)).relay(stream, after_first_token))


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
