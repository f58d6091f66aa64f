"""Anthropic-compatible API: `/v1/messages` and `/v1/messages/count_tokens` (API key or
JWT, as `x-api-key` or `Authorization: Bearer`), for Claude Code and the `anthropic` SDK.
`anthropic-version` and `anthropic-beta` are accepted and not needed: one version is
spoken, and the betas' fields we do not carry are ignored."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from api.anthropic_messages import estimate_input_tokens, internal_request
from api.deps import KeyHeaderCaller, RedisDep, SessionDep
from api.schemas.anthropic import (
    AnthropicMessage,
    CountTokensRequest,
    InputTokens,
    MessagesRequest,
)
from api.streaming.anthropic_events import message_answer, message_events
from api.streaming.sse import MEDIA_TYPE, sse_stream
from api.streaming.start import start_completion, wait_for_reply
from core.chat import route_for_model

router = APIRouter(prefix="/v1", tags=["anthropic"])

MESSAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {MEDIA_TYPE: {"example": "event: message_start\ndata: {...}\n\n"}}},
    402: {"description": "Monthly quota spent (`billing_error`)"},
    403: {"description": "The model is not in the caller's plan (`permission_error`)"},
    429: {"description": "Rate limited (`rate_limit_error`), with `Retry-After`"},
}


@router.post(
    "/messages",
    response_model=AnthropicMessage,
    status_code=200,
    operation_id="anthropic-create-message",
    summary="Anthropic Messages API, streamed with `stream: true` (API key or JWT)",
    responses=MESSAGE_RESPONSES,
)
async def create_message(
    body: MessagesRequest,
    caller: KeyHeaderCaller,
    session: SessionDep,
    redis: RedisDep,
    response: Response,
) -> AnthropicMessage | StreamingResponse:
    """A stateless generation through the same workers, quotas and usage records as
    `/v1/chat/completions`, on any model of the caller's plan. A client that disconnects
    mid-stream is still billed for what the provider generated."""
    route = route_for_model(caller.plan, body.model)
    request = internal_request(body, route.provider)
    started = await start_completion(
        session, redis, caller=caller, route=route, request=request, kind="messages"
    )
    if body.stream:
        estimate = estimate_input_tokens(body, route.provider)
        return sse_stream(message_events(started, route.model, estimate), started.headers)
    response.headers.update(started.headers)
    result = await wait_for_reply(started)
    return message_answer(started, route.model, result)


@router.post(
    "/messages/count_tokens",
    response_model=InputTokens,
    status_code=200,
    operation_id="anthropic-count-message-tokens",
    summary="The input tokens of a Messages request, estimated (API key or JWT)",
)
async def count_message_tokens(body: CountTokensRequest, caller: KeyHeaderCaller) -> InputTokens:
    """An estimate (about four characters a token, a fixed count an image): the API never
    calls a provider, so Anthropic's own count is not asked. Nothing is charged."""
    route = route_for_model(caller.plan, body.model)
    return InputTokens(input_tokens=estimate_input_tokens(body, route.provider))
