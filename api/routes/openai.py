"""OpenAI-compatible API: `/v1/models` and `/v1/chat/completions` (API key or JWT)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from api.deps import Caller, RedisDep, SessionDep
from api.generations import StartedGeneration, start_generation, wait_for_reply
from api.relay import relay_events
from api.schemas.openai import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
    OpenAIModel,
    OpenAIModelList,
)
from core.chat import CUSTOM_PROVIDER, default_model, route_for_model
from core.config import settings
from core.errors import AppError
from core.plans import models_for_plan
from core.streams import CANCELLED, DELTA, DONE, ERROR, START
from models import User

# Adapters that speak OpenAI's protocol and so take tools, response_format and content parts.
OPENAI_COMPATIBLE = frozenset({"deepseek", "kimi", CUSTOM_PROVIDER})
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

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get(
    "/models",
    response_model=OpenAIModelList,
    status_code=200,
    operation_id="openai-list-models",
    summary="The catalogue models the caller's plan may use",
)
async def list_models(caller: Caller) -> OpenAIModelList:
    return OpenAIModelList(
        data=[
            OpenAIModel(id=name, created=0, owned_by=settings.models[name].provider)
            for name in models_for_plan(caller.plan)
        ]
    )


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
) -> AsyncIterator[str]:
    """The generation's events as `chat.completion.chunk`s, ending `data: [DONE]`."""
    completion_id = f"chatcmpl-{started.generation_id.hex}"
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"

    def delta(content: dict[str, Any], finish_reason: str | None = None) -> str:
        return chunk([{"index": 0, "delta": content, "finish_reason": finish_reason}])

    async for event in relay_events(str(started.generation_id)):
        if event.is_ping:
            yield ": ping\n\n"
        elif event.event == START:
            yield delta({"role": "assistant", "content": ""})
        elif event.event == DELTA:
            yield delta({"content": event.data["content"]})
        elif event.event in (DONE, CANCELLED):
            yield delta({}, "stop")
            if include_usage:
                yield chunk([], usage=_usage(event.data))
        elif event.event == ERROR:
            # OpenAI's own mid-stream failure shape; SDKs raise it as an APIError.
            error = {
                "message": event.data.get("message", "The generation failed."),
                "type": "api_error",
                "code": event.data.get("code", "upstream_error"),
            }
            yield f"data: {json.dumps({'error': error}, separators=(',', ':'))}\n\n"
    yield "data: [DONE]\n\n"


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    status_code=200,
    operation_id="openai-create-chat-completion",
    summary="OpenAI-compatible chat completion, streamed with `stream: true` (API key or JWT)",
    responses={
        200: {"content": {"text/event-stream": {"example": "data: {...}\n\ndata: [DONE]\n\n"}}},
        402: {"description": "Monthly quota spent (`quota_exceeded`)"},
        429: {"description": "Rate limited (`rate_limited`), with `Retry-After`"},
    },
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    caller: Caller,
    session: SessionDep,
    redis: RedisDep,
    response: Response,
) -> ChatCompletion | StreamingResponse:
    """A stateless generation through the same workers as chat. A client that
    disconnects mid-stream is still billed for what the provider generated."""
    model = default_model(caller.plan) if body.model == "auto" else body.model
    route = route_for_model(caller.plan, model)
    user = await session.get(User, caller.user_id)
    if user is None:
        raise AppError("The account no longer exists.", code="token_invalid", status_code=401)
    started = await start_generation(
        session,
        redis,
        user=user,
        route=route,
        request=_provider_request(body, route.provider),
        api_key_id=caller.api_key_id,
        kind="completion",
        caller=caller,
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
        result = await wait_for_reply(started.generation_id)
    except AppError as exc:
        exc.headers = {**started.headers, **exc.headers}
        raise
    return ChatCompletion(
        id=f"chatcmpl-{started.generation_id.hex}",
        created=int(time.time()),
        model=route.model,
        choices=[
            Choice(
                message=AssistantMessage(content=result.get("content", "")), finish_reason="stop"
            )
        ],
        usage=CompletionUsage(**_usage(result)),
    )
