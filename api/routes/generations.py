"""A generation's status, its resumable event stream, and cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, status
from fastapi.responses import Response, StreamingResponse

from api.deps import OwnedGeneration, RedisDep, SessionDep
from api.schemas.conversations import GenerationOut
from api.streaming.relay import relay_events
from api.streaming.sse import SSE_RESPONSES, sse_events
from api.streaming.start import cancel_generation
from core.errors import AppError
from core.lifecycle import CANCEL
from core.streams import parse_stream_id

router = APIRouter(prefix="/v1/generations", tags=["generations"])


@router.get("/{generation_id}", response_model=GenerationOut, operation_id="generations-get")
async def get_generation(generation: OwnedGeneration) -> dict[str, Any]:
    usage = None
    if generation.prompt_tokens is not None and generation.completion_tokens is not None:
        usage = {
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "total_tokens": generation.prompt_tokens + generation.completion_tokens,
            "reasoning_tokens": generation.reasoning_tokens,
            "cached_tokens": generation.cached_tokens,
            "estimated": generation.usage_estimated,
        }
    return {
        "id": generation.id,
        "status": generation.status,
        "conversation_id": generation.conversation_id,
        "model": generation.model,
        "error": generation.error,
        "usage": usage,
        "created_at": generation.created_at,
        "finished_at": generation.finished_at,
    }


@router.get(
    "/{generation_id}/stream",
    response_class=StreamingResponse,
    response_model=None,
    responses={**SSE_RESPONSES, 400: {"description": "`Last-Event-ID` is not a stream id"}},
    operation_id="generations-stream",
)
async def stream_generation(
    generation: OwnedGeneration,
    last_event_id: Annotated[
        str | None,
        Header(description="Resume after this event id: `<ms>-<seq>` or `<ms>`, as sent in `id:`"),
    ] = None,
) -> StreamingResponse:
    """Replays the events from the start, or only those after `Last-Event-ID`."""
    cursor = None
    if last_event_id is not None:
        # Checked here, not by a header pattern: an id Redis refuses must never reach the
        # read every stream shares, and a pattern cannot bound the numbers to 64 bits.
        parsed = parse_stream_id(last_event_id)
        if parsed is None:
            raise AppError(
                "Last-Event-ID is not a stream id (`<ms>-<seq>` or `<ms>`, each at most 2^64 - 1).",
                code="validation_error",
            )
        ms, seq = parsed
        cursor = f"{ms}-{seq}"
    return sse_events(relay_events(str(generation.id), cursor))


@router.post(
    "/{generation_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    response_model=None,
    operation_id="generations-cancel",
)
async def cancel(generation: OwnedGeneration, session: SessionDep, redis: RedisDep) -> None:
    """The worker stops at its next chunk; the partial reply is kept as `cancelled`."""
    if CANCEL.permits(generation.status):
        await cancel_generation(session, redis, generation)
