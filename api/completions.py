"""OpenAI-shaped chat completions over our generation pipeline, shared by
`/v1/chat/completions` and `/v1/plugin-api/chat/completions`: the request the
worker sends upstream, started and answered through api/streaming/ (the chunk
stream and the final answer are api/streaming/openai_chunks.py's).
"""

from __future__ import annotations

import re
from typing import Any

import redis.asyncio as aioredis
from fastapi import Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.schemas.openai import ChatCompletion, ChatCompletionRequest
from api.streaming.openai_chunks import completion_answer, completion_chunks
from api.streaming.sse import sse_stream
from api.streaming.start import start_completion, wait_for_reply
from core.chat import Route, require_vision
from core.errors import AppError
from core.providers import LOCAL_PROVIDER, speaks_openai
from core.quota import QuotaSubject

_IMAGE_DATA_URL = re.compile(r"data:image/(png|jpeg|webp|gif);base64,")
PASSED_THROUGH = (
    "temperature",
    "top_p",
    "stop",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "tools",
    "tool_choice",
    "reasoning_effort",
    "thinking",
)
OPENAI_ONLY = ("response_format",)
# The `responses` of a completion route's OpenAPI entry.
COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"example": "data: {...}\n\ndata: [DONE]\n\n"}}},
    402: {"description": "Monthly quota spent (`quota_exceeded`)"},
    429: {"description": "Rate limited (`rate_limited`), with `Retry-After`"},
}


def _image_urls(body: ChatCompletionRequest) -> list[Any]:
    return [
        part.get("image_url", {}).get("url") if isinstance(part.get("image_url"), dict) else None
        for message in body.messages
        if isinstance(message.content, list)
        for part in message.content
        if isinstance(part, dict) and part.get("type") == "image_url"
    ]


def check_images(body: ChatCompletionRequest, route: Route) -> None:
    """Image parts go to a model with vision only, as an `https:` URL (handed to the
    provider, never fetched here) or a base64 `data:` URL of an image type."""
    urls = _image_urls(body)
    if not urls:
        return
    require_vision(route)
    for url in urls:
        if not isinstance(url, str) or not (
            url.startswith("https://") or _IMAGE_DATA_URL.match(url)
        ):
            raise AppError(
                "An image_url must be an https: URL or a data:image/(png|jpeg|webp|gif);base64 "
                "URL.",
                code="unsupported_content",
            )


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    return content or ""


def provider_request(body: ChatCompletionRequest, provider: str) -> dict[str, Any]:
    """What the worker sends upstream: messages plus the parameters the client set.
    Messages keep OpenAI's format (tool calls, tool results, an assistant turn's
    `reasoning_content` and `thinking_blocks`): each adapter translates them for its
    provider. `reasoning_effort` is the worker's to map; the rest goes upstream as is."""
    params = body.model_dump(include=set(PASSED_THROUGH), exclude_none=True)
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if speaks_openai(provider):
        params.update(body.model_dump(include=set(OPENAI_ONLY), exclude_none=True))
    elif any(getattr(body, name) is not None for name in OPENAI_ONLY):
        raise AppError(
            f"{', '.join(OPENAI_ONLY)} are supported only by OpenAI-compatible models.",
            code="unsupported_parameter",
        )
    if provider == LOCAL_PROVIDER:
        # The built-in provider reads plain text and has no tools.
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": _text(m.content)}
            for m in body.messages
            if m.role != "tool"
        ]
    else:
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
    return {"messages": messages, **params}


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
    check_images(body, route)
    started = await start_completion(
        session,
        redis,
        caller=caller,
        route=route,
        request=provider_request(body, route.provider),
        kind=kind,
    )
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_stream(completion_chunks(started, route.model, include_usage), started.headers)
    response.headers.update(started.headers)
    result = await wait_for_reply(started)
    return completion_answer(started, route.model, result)
