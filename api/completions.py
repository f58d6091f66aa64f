"""OpenAI-shaped chat completions over our generation pipeline, shared by
`/v1/chat/completions` and `/v1/plugin-api/chat/completions`: the request the
worker sends upstream, the `chat.completion.chunk` stream and the final answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as aioredis
from fastapi import Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.schemas.openai import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
)
from api.streaming.start import StartedGeneration, start_completion, wait_for_reply
from core.chat import CUSTOM_PROVIDER, PLUGIN_PROVIDER, Route
from core.errors import AppError
from core.quota import QuotaSubject
from core.streams import CANCELLED, DELTA, DONE, ERROR, START

# Adapters that speak OpenAI's protocol and so take tools, response_format and content parts.
OPENAI_COMPATIBLE = frozenset({"deepseek", "kimi", CUSTOM_PROVIDER, PLUGIN_PROVIDER})
PASSED_THROUGH = (
    "temperature",
    "top_p",
    "stop",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "seed",
)
OPENAI_ONLY = ("tools", "tool_choice", "response_format")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# The `responses` of a completion route's OpenAPI entry.
COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"example": "data: {...}\n\ndata: [DONE]\n\n"}}},
    402: {"description": "Monthly quota spent (`quota_exceeded`)"},
    429: {"description": "Rate limited (`rate_limited`), with `Retry-After`"},
}


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    return content or ""


def _provider_request(body: ChatCompletionRequest, provider: str) -> dict[str, Any]:
    """What the worker sends upstream: messages plus the parameters the client set."""
    params = body.model_dump(include=set(PASSED_THROUGH), exclude_none=True)
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if provider in OPENAI_COMPATIBLE:
        params.update(body.model_dump(include=set(OPENAI_ONLY), exclude_none=True))
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
    else:
        if any(getattr(body, name) is not None for name in OPENAI_ONLY):
            raise AppError(
                f"{', '.join(OPENAI_ONLY)} are supported only by OpenAI-compatible models.",
                code="unsupported_parameter",
            )
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": _text(m.content)}
            for m in body.messages
            if m.role != "tool"
        ]
    return {"messages": messages, **params}


def _usage(data: dict[str, Any]) -> dict[str, int]:
    usage = data.get("usage") or {}
    return {
        name: int(usage.get(name) or 0)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    }


async def _chunks(
    started: StartedGeneration, model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    """The generation's events as `chat.completion.chunk`s, ending `data: [DONE]`."""
    completion_id = f"chatcmpl-{started.generation_id.hex}"
    created = int(time.time())

    head = {"id": completion_id, "object": "chat.completion.chunk", "created": created}

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload = {**head, "model": model, "choices": choices, **extra}
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def delta(content: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return chunk([{"index": 0, "delta": content, "finish_reason": finish_reason}])

    # A text delta is the frame sent once per coalesced batch of tokens: encoded
    # once around the content instead of a whole object each time. Split at the last
    # `""`, the content's: the model's name before it may hold one too.
    text_open, text_close = delta({"content": ""}).rsplit(b'""', 1)

    async for event in started.events():
        if event.is_ping:
            yield b": ping\n\n"
        elif event.event == START:
            yield delta({"role": "assistant", "content": ""})
        elif event.event == DELTA:
            if event.data.get("content"):
                yield text_open + orjson.dumps(event.data["content"]) + text_close
            if event.data.get("tool_calls"):
                yield delta({"tool_calls": event.data["tool_calls"]})
        elif event.event in (DONE, CANCELLED):
            yield delta({}, event.data.get("finish_reason") or "stop")
            if include_usage:
                yield chunk([], usage=_usage(event.data))
        elif event.event == ERROR:
            # OpenAI's own mid-stream failure shape; SDKs raise it as an APIError.
            error = {
                "message": event.data.get("message", "The generation failed."),
                "type": "api_error",
                "code": event.data.get("code", "upstream_error"),
            }
            yield b"data: " + orjson.dumps({"error": error}) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def create_completion(
    body: ChatCompletionRequest,
    *,
    caller: QuotaSubject,
    route: Route,
    kind: str,
    session: AsyncSession,
    redis: aioredis.Redis,
    response: Response,
) -> ChatCompletion | StreamingResponse:
    """Start a stateless generation on `route`, charged to `caller`, and answer it as
    OpenAI does: a chunk stream with `stream: true`, else one `chat.completion`."""
    started = await start_completion(
        session,
        redis,
        caller=caller,
        route=route,
        request=_provider_request(body, route.provider),
        kind=kind,
    )
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _chunks(started, route.model, include_usage),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **started.headers},
        )
    response.headers.update(started.headers)
    try:
        result = await wait_for_reply(started)
    except AppError as exc:
        exc.headers = {**started.headers, **exc.headers}
        raise
    tool_calls = result.get("tool_calls")
    return ChatCompletion(
        id=f"chatcmpl-{started.generation_id.hex}",
        created=int(time.time()),
        model=route.model,
        choices=[
            Choice(
                message=AssistantMessage(
                    # OpenAI answers a turn of only tool calls with null content.
                    content=result.get("content") or (None if tool_calls else ""),
                    tool_calls=tool_calls,
                ),
                finish_reason=result.get("finish_reason") or "stop",
            )
        ],
        usage=CompletionUsage(**_usage(result)),
    )
