"""OpenAI Responses API: `POST /v1/responses` and `GET /v1/responses/{id}` (API key or
JWT), run as a stateless generation through the same pipeline as chat completions."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from api.completions import COMPLETION_RESPONSES, provider_request
from api.deps import Caller, RedisDep, SessionDep
from api.responses_format import ResponseDraft, chat_request
from api.responses_store import keep, kind_for, previous_history, stored_response
from api.schemas.responses import ResponseRequest
from api.streaming.response_events import response_events
from api.streaming.sse import sse_stream
from api.streaming.start import start_completion, wait_for_reply
from core.chat import route_for_model

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post(
    "/responses",
    response_model=dict[str, Any],
    status_code=200,
    operation_id="openai-create-response",
    summary="OpenAI Responses API, streamed with `stream: true` (API key or JWT)",
    responses=COMPLETION_RESPONSES,
)
async def create_response(
    body: ResponseRequest,
    caller: Caller,
    session: SessionDep,
    redis: RedisDep,
) -> JSONResponse | StreamingResponse:
    """A stateless generation whose input is translated to the chat format the workers
    run. Kept (unless `store: false`) so `previous_response_id` continues it."""
    route = route_for_model(caller.plan, body.model)
    history: list[dict[str, Any]] = []
    if body.previous_response_id:
        history = await previous_history(session, caller, body.previous_response_id)
    chat = chat_request(body, route.model, history)
    started = await start_completion(
        session,
        redis,
        caller=caller,
        route=route,
        request=provider_request(chat, route.provider),
        kind=kind_for(body.store),
    )
    draft = ResponseDraft(started.generation_id, route.model, body)
    kept = keep(draft)
    if body.stream:
        return sse_stream(response_events(started, draft, kept), started.headers)
    result = await wait_for_reply(started)
    # Shielded: a client gone now must not cancel the keeping.
    await asyncio.shield(kept)
    return JSONResponse(draft.finished(result), headers=started.headers)


@router.get(
    "/responses/{response_id}",
    response_model=dict[str, Any],
    status_code=200,
    operation_id="openai-get-response",
    summary="A stored response of the caller's (API key or JWT)",
)
async def get_response(
    response_id: str, caller: Caller, session: SessionDep, redis: RedisDep
) -> dict[str, Any]:
    return await stored_response(session, redis, caller, response_id)
