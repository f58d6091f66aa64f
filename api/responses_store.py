"""What the Responses API keeps: a stored response is its generation row (`kind`
"response"), whose `request` holds the chat messages it ran and, once it ended, the
`response` object and the `reply` a continuation sends back. `store: false` keeps
nothing: its row (`kind` "response_nostore", never listed) is deleted once it ended,
after its usage record is written (which keeps the usage, `generation_id` set null).

The end is written by a task of the API process that follows the generation's stream
on its own, so a client that disconnects mid-stream still leaves a stored response;
should that process die first, retrieving it rebuilds it from the stream's `done`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from api.responses_format import ResponseDraft, assistant_message, generation_id_of
from api.schemas.responses import ResponseRequest
from api.streaming.relay import relay_events
from core.db import async_session_factory
from core.errors import AppError, NotFound
from core.lifecycle import GenerationStatus
from core.quota import QuotaSubject
from core.redis import as_entries
from core.streams import CANCELLED, DONE, ERROR, decode, stream_key
from models import Generation

log = logging.getLogger("switchboard.api")

KEPT = "response"
UNKEPT = "response_nostore"
# A task holds a reference of its own only while it runs: kept here until it ends.
_keepers: set[asyncio.Task[None]] = set()


def kind_for(store: bool) -> str:
    return KEPT if store else UNKEPT


def not_found(rid: str) -> NotFound:
    return NotFound(f"Response with id '{rid}' not found.")


async def previous_history(
    session: AsyncSession, caller: QuotaSubject, rid: str
) -> list[dict[str, Any]]:
    """The conversation a stored response of the caller's ran, its reply included,
    without its instructions (which OpenAI does not carry over)."""
    generation_id = generation_id_of(rid)
    request = None
    if generation_id is not None:
        request = await session.scalar(
            select(Generation.request).where(
                Generation.id == generation_id,
                Generation.user_id == caller.user_id,
                Generation.kind == KEPT,
            )
        )
    if not request or "reply" not in request:
        raise AppError(
            f"Previous response with id '{rid}' not found.",
            code="previous_response_not_found",
            status_code=400,
        )
    messages = list(request.get("messages") or [])
    if (request.get("response") or {}).get("instructions") and messages:
        messages = messages[1:]
    return [*messages, request["reply"]]


def keep(draft: ResponseDraft) -> asyncio.Task[None]:
    """Follow the generation to its end and keep (or, `store: false`, delete) its row."""
    task = asyncio.create_task(_keep(draft))
    _keepers.add(task)
    task.add_done_callback(_keepers.discard)
    return task


async def _keep(draft: ResponseDraft) -> None:
    try:
        async for event in relay_events(str(draft.generation_id)):
            if event.event == DONE:
                await _ended(draft, draft.finished(event.data), assistant_message(event.data))
                return
            if event.event == ERROR:
                code = event.data.get("code", "upstream_error")
                message = event.data.get("message", "The generation failed.")
                await _ended(draft, draft.failed(code, message), None)
                return
            if event.event == CANCELLED:
                failed = draft.failed("cancelled", "The response was cancelled.", "cancelled")
                await _ended(draft, failed, None)
                return
    except Exception:
        log.exception("response not kept", extra={"generation_id": str(draft.generation_id)})


async def _ended(
    draft: ResponseDraft, response: dict[str, Any], reply: dict[str, Any] | None
) -> None:
    async with async_session_factory()() as session:
        row = Generation.id == draft.generation_id
        if not draft.body.store:
            await session.execute(delete(Generation).where(row, Generation.kind == UNKEPT))
        else:
            patch: dict[str, Any] = {"response": response}
            if reply is not None:
                patch["reply"] = reply
            await _patch(session, draft.generation_id, patch)
        await session.commit()


async def _patch(session: AsyncSession, generation_id: uuid.UUID, patch: dict[str, Any]) -> None:
    merged = func.coalesce(Generation.request, literal({}, JSONB)).op("||")(literal(patch, JSONB))
    await session.execute(
        update(Generation)
        .where(Generation.id == generation_id, Generation.kind == KEPT)
        .values(request=merged)
    )


async def stored_response(
    session: AsyncSession, redis: aioredis.Redis, caller: QuotaSubject, rid: str
) -> dict[str, Any]:
    """A stored response of the caller's, as it stands (queued and running ones too)."""
    generation_id = generation_id_of(rid)
    if generation_id is None:
        raise not_found(rid)
    found = (
        await session.execute(
            select(
                Generation.request, Generation.status, Generation.model, Generation.created_at
            ).where(
                Generation.id == generation_id,
                Generation.user_id == caller.user_id,
                Generation.kind == KEPT,
            )
        )
    ).one_or_none()
    if found is None:
        raise not_found(rid)
    request, status, model, created_at = found
    if request and "response" in request:
        return dict(request["response"])
    draft = _bare_draft(generation_id, model, created_at)
    if status in (GenerationStatus.QUEUED, GenerationStatus.RUNNING):
        return draft.response("queued" if status == GenerationStatus.QUEUED else "in_progress")
    # Ended, but its end was not kept (the API process that followed it died): the
    # stream's terminal event still tells, for as long as the stream lives.
    last = as_entries(await redis.xrevrange(stream_key(str(generation_id)), count=1))
    event, data = decode(last[0][1]) if last else (None, {})
    if event == DONE:
        response = draft.finished(data)
        await _patch(
            session, generation_id, {"response": response, "reply": assistant_message(data)}
        )
        await session.commit()
        return response
    if status == GenerationStatus.CANCELLED:
        return draft.failed("cancelled", "The response was cancelled.", "cancelled")
    return draft.failed("upstream_error", "The response failed.")


def _bare_draft(generation_id: uuid.UUID, model: str, created_at: datetime) -> ResponseDraft:
    body = ResponseRequest(model=model, input=[])
    return ResponseDraft(generation_id, model, body, int(created_at.timestamp()))
