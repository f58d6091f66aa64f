"""A generation's events as Anthropic answers them: the Messages event stream
(`stream: true`) or, from the `done` event, one `message`.

Reasoning becomes a `thinking` block, reply text a `text` block and tool-call fragments
`tool_use` blocks (their arguments as `input_json_delta`s), each opened when its first
piece arrives and closed when the next block opens. The worker learns a thinking
block's signature only when the provider's stream ends, and hands it over in `done`:
its `signature_delta` then names the block by index, after the block's stop when a
text or tool block followed it (the SDKs' accumulators apply deltas by index).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from api.schemas.anthropic import AnthropicMessage, AnthropicUsage
from api.streaming.sse import frame
from api.streaming.start import StartedGeneration
from core.streams import CANCELLED, DELTA, DONE, ERROR, REASONING, START

# Our finish reasons (OpenAI's words) in Anthropic's.
STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
# Anthropic's error type for a failed generation's code; the rest are `api_error`.
ERROR_TYPES = {"unavailable": "overloaded_error", "rate_limited": "rate_limit_error"}
PING = frame(b'{"type":"ping"}', event="ping")


def message_id(started: StartedGeneration) -> str:
    return f"msg_{started.generation_id.hex}"


def usage_of(data: dict[str, Any]) -> AnthropicUsage:
    """Anthropic's usage from a `done` event's: `input_tokens` leaves out the cache reads.
    Cache writes are not told apart in `done`, so they stay in `input_tokens`."""
    usage = data.get("usage") or {}
    cached = int(usage.get("cached_tokens") or 0)
    return AnthropicUsage(
        input_tokens=max(int(usage.get("prompt_tokens") or 0) - cached, 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cache_read_input_tokens=cached,
        cache_creation_input_tokens=0,
    )


def stop_reason(data: dict[str, Any]) -> str:
    return STOP_REASONS.get(data.get("finish_reason") or "stop", "end_turn")


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return frame(orjson.dumps({"type": name, **payload}), event=name)


class _Blocks:
    """The content blocks of one streamed message: which is open, which index each
    thinking run and each tool call got."""

    def __init__(self) -> None:
        self.count = 0
        self.open: int | None = None
        self.open_kind = ""
        self.thinking: list[int] = []
        self.tools: dict[int, int] = {}

    def start(self, kind: str, block: dict[str, Any]) -> Iterator[bytes]:
        yield from self.stop()
        self.open, self.open_kind = self.count, kind
        self.count += 1
        yield _event("content_block_start", {"index": self.open, "content_block": block})

    def stop(self) -> Iterator[bytes]:
        if self.open is not None:
            yield _event("content_block_stop", {"index": self.open})
            self.open, self.open_kind = None, ""

    def delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"index": index, "delta": delta})

    def reasoning(self, text: str) -> Iterator[bytes]:
        if self.open_kind != "thinking":
            yield from self.start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self.thinking.append(self.count - 1)
        assert self.open is not None
        yield self.delta(self.open, {"type": "thinking_delta", "thinking": text})

    def text(self, text: str) -> Iterator[bytes]:
        if self.open_kind != "text":
            yield from self.start("text", {"type": "text", "text": ""})
        assert self.open is not None
        yield self.delta(self.open, {"type": "text_delta", "text": text})

    def tool_call(self, fragment: dict[str, Any]) -> Iterator[bytes]:
        tool_index = int(fragment.get("index") or 0)
        function = fragment.get("function") or {}
        if tool_index not in self.tools:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": fragment.get("id") or "",
                "name": function.get("name") or "",
                "input": {},
            }
            yield from self.start("tool_use", block)
            self.tools[tool_index] = self.count - 1
        if function.get("arguments"):
            partial = {"type": "input_json_delta", "partial_json": function["arguments"]}
            yield self.delta(self.tools[tool_index], partial)

    def finish(self, provider_blocks: list[dict[str, Any]]) -> Iterator[bytes]:
        """Sign the thinking runs with the provider's blocks, in order, and add the blocks
        whose text never streamed (redacted ones, or thinking shown empty)."""
        signed = [block for block in provider_blocks if block.get("type") == "thinking"]
        for index, block in zip(self.thinking, signed, strict=False):
            if block.get("signature"):
                yield self.delta(
                    index, {"type": "signature_delta", "signature": block["signature"]}
                )
        yield from self.stop()
        unstreamed = signed[len(self.thinking) :] + [
            block for block in provider_blocks if block.get("type") == "redacted_thinking"
        ]
        for block in unstreamed:
            if block["type"] == "redacted_thinking":
                yield from self.start("redacted_thinking", block)
            else:
                yield from self.start("thinking", {**block, "thinking": "", "signature": ""})
                assert self.open is not None
                thought = {"type": "thinking_delta", "thinking": block.get("thinking", "")}
                yield self.delta(self.open, thought)
                signature = {"type": "signature_delta", "signature": block.get("signature", "")}
                yield self.delta(self.open, signature)
            yield from self.stop()


async def message_events(
    started: StartedGeneration, model: str, input_tokens: int
) -> AsyncIterator[bytes]:
    """The generation's events as Anthropic's stream: `message_start`, the content blocks,
    `message_delta` (stop reason, usage) and `message_stop`; `ping` while idle.
    `input_tokens` is the estimate `message_start` shows until `message_delta` tells."""
    blocks = _Blocks()
    async for event in started.events():
        if event.is_ping:
            yield PING
        elif event.event == START:
            message: dict[str, Any] = {
                "id": message_id(started),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 0},
            }
            yield _event("message_start", {"message": message})
        elif event.event == REASONING:
            if event.data.get("content"):
                for piece in blocks.reasoning(event.data["content"]):
                    yield piece
        elif event.event == DELTA:
            if event.data.get("content"):
                for piece in blocks.text(event.data["content"]):
                    yield piece
            for fragment in event.data.get("tool_calls") or []:
                for piece in blocks.tool_call(fragment):
                    yield piece
        elif event.event in (DONE, CANCELLED):
            for piece in blocks.finish(event.data.get("thinking_blocks") or []):
                yield piece
            delta = {"stop_reason": stop_reason(event.data), "stop_sequence": None}
            usage = usage_of(event.data).model_dump()
            yield _event("message_delta", {"delta": delta, "usage": usage})
            yield _event("message_stop", {})
        elif event.event == ERROR:
            error_type = ERROR_TYPES.get(event.data.get("code", ""), "api_error")
            reason = event.data.get("message", "The generation failed.")
            yield _event("error", {"error": {"type": error_type, "message": reason}})


def message_answer(
    started: StartedGeneration, model: str, result: dict[str, Any]
) -> AnthropicMessage:
    """The `done` event's data (api/streaming/start.py `wait_for_reply`) as one message."""
    content: list[dict[str, Any]] = []
    if result.get("thinking_blocks"):
        content.extend(result["thinking_blocks"])
    elif result.get("reasoning"):
        # Another provider's reasoning: unsigned, nothing needs it back verified.
        content.append({"type": "thinking", "thinking": result["reasoning"], "signature": ""})
    if result.get("content"):
        content.append({"type": "text", "text": result["content"]})
    for call in result.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": _arguments(function.get("arguments")),
            }
        )
    return AnthropicMessage(
        id=message_id(started),
        model=model,
        content=content,
        stop_reason=stop_reason(result),
        stop_sequence=None,
        usage=usage_of(result),
    )


def _arguments(raw: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
