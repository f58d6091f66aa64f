"""A generation's status, its resumable event stream, and cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, status
from fastapi.responses import Response, StreamingResponse

from api.deps import OwnedGeneration, RedisDep, SessionDep
from api.generations import cancel_generation
from api.routes.conversations import SSE_RESPONSES, sse_response
from api.schemas.conversations import GenerationOut

router = APIRouter(prefix="/v1/generations", tags=["generations"])


@router.get("/{generation_id}", response_model=GenerationOut, operation_id="generations-get")
async def get_generation(generation: OwnedGeneration) -> dict[str, Any]:
    usage = None
    if generation.prompt_tokens is not None and generation.completion_tokens is not None:
        usage = {
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "total_tokens": generation.prompt_tokens + generation.completion_tokens,
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
    responses=SSE_RESPONSES,
    operation_id="generations-stream",
)
async def stream_generation(
    generation: OwnedGeneration,
    last_event_id: Annotated[
        str | None, Header(pattern=r"^\d+-\d+$", description="Resume after this event id")
    ] = None,
) -> StreamingResponse:
    """Replays the events from the start, or only those after `Last-Event-ID`."""
    return sse_response(generation.id, last_event_id)


@router.post(
    "/{generation_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    response_model=None,
    operation_id="generations-cancel",
)
async def cancel(generation: OwnedGeneration, session: SessionDep, redis: RedisDep) -> None:
    """The worker stops at its next chunk; the partial reply is kept as `cancelled`."""
    if generation.status in ("queued", "running"):
        await cancel_generation(session, redis, generation)
