"""A generation's events as OpenAI answers them: the `chat.completion.chunk` stream
(`stream: true`) or, from the `done` event, one `chat.completion`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from api.schemas.openai import AssistantMessage, ChatCompletion, Choice, CompletionUsage
from api.streaming.sse import PING_FRAME, frame
from api.streaming.start import StartedGeneration
from core.streams import CANCELLED, DELTA, DONE, ERROR, REASONING, START

DONE_FRAME = frame(b"[DONE]")


def completion_id(started: StartedGeneration) -> str:
    return f"chatcmpl-{started.generation_id.hex}"


def usage_of(data: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage from a `done` event's: the three counts, and the cached and
    reasoning tokens in their `_details` objects whenever the provider reported them."""
    usage = data.get("usage") or {}
    answer: dict[str, Any] = {
        name: int(usage.get(name) or 0)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    if usage.get("cached_tokens") is not None:
        answer["prompt_tokens_details"] = {"cached_tokens": int(usage["cached_tokens"])}
    if usage.get("reasoning_tokens") is not None:
        answer["completion_tokens_details"] = {"reasoning_tokens": int(usage["reasoning_tokens"])}
    return answer


async def completion_chunks(
    started: StartedGeneration, model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    """The generation's events as `chat.completion.chunk`s, ending `data: [DONE]`."""
    created = int(time.time())

    head = {"id": completion_id(started), "object": "chat.completion.chunk", "created": created}

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return frame(orjson.dumps({**head, "model": model, "choices": choices, **extra}))

    def delta(content: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return chunk([{"index": 0, "delta": content, "finish_reason": finish_reason}])

    # A text delta is the frame sent once per coalesced batch of tokens: encoded
    # once around the content instead of a whole object each time. Split at the last
    # `""`, the content's: the model's name before it may hold one too.
    text_open, text_close = delta({"content": ""}).rsplit(b'""', 1)
    # The same for reasoning, which streams as `reasoning_content` before any content.
    thought_open, thought_close = delta({"reasoning_content": ""}).rsplit(b'""', 1)

    async for event in started.events():
        if event.is_ping:
            yield PING_FRAME
        elif event.event == START:
            yield delta({"role": "assistant", "content": ""})
        elif event.event == REASONING:
            if event.data.get("content"):
                yield thought_open + orjson.dumps(event.data["content"]) + thought_close
        elif event.event == DELTA:
            if event.data.get("content"):
                yield text_open + orjson.dumps(event.data["content"]) + text_close
            if event.data.get("tool_calls"):
                yield delta({"tool_calls": event.data["tool_calls"]})
        elif event.event in (DONE, CANCELLED):
            if event.data.get("thinking_blocks"):
                # Anthropic's signed blocks, whole, for the client to send back with the turn.
                yield delta({"thinking_blocks": event.data["thinking_blocks"]})
            yield delta({}, event.data.get("finish_reason") or "stop")
            if include_usage:
                yield chunk([], usage=usage_of(event.data))
        elif event.event == ERROR:
            # OpenAI's own mid-stream failure shape; SDKs raise it as an APIError.
            error = {
                "message": event.data.get("message", "The generation failed."),
                "type": "api_error",
                "code": event.data.get("code", "upstream_error"),
            }
            yield frame(orjson.dumps({"error": error}))
    yield DONE_FRAME


def completion_answer(
    started: StartedGeneration, model: str, result: dict[str, Any]
) -> ChatCompletion:
    """The `done` event's data (api/streaming/start.py `wait_for_reply`) as one answer."""
    tool_calls = result.get("tool_calls")
    return ChatCompletion(
        id=completion_id(started),
        created=int(time.time()),
        model=model,
        choices=[
            Choice(
                message=AssistantMessage(
                    # OpenAI answers a turn of only tool calls with null content.
                    content=result.get("content") or (None if tool_calls else ""),
                    reasoning_content=result.get("reasoning"),
                    thinking_blocks=result.get("thinking_blocks"),
                    tool_calls=tool_calls,
                ),
                finish_reason=result.get("finish_reason") or "stop",
            )
        ],
        usage=CompletionUsage.model_validate(usage_of(result)),
    )
