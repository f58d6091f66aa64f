"""Document 001 (the AI-Hub developer platform): `/api/v1/developer/*` — API keys,
usage, the demo quota reset, chat and models. Keys, usage and quotas are
`/v1/developer`'s; chat is a stateless generation through the workers, as
`/v1/chat/completions` runs it. Its `/api/v1/auth/*` routes are api/compat/api_v1_auth.py's.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select, update

from api.compat.api_v1_schemas import (
    DemoReset,
    DeveloperChatAnswer,
    DeveloperChatRequest,
    DeveloperModel,
    DeveloperModels,
    UsageHistory,
    shown_plan,
)
from api.deps import Caller, CurrentUser, RedisDep, SessionDep
from api.routes import developer
from api.schemas.developer import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, UsageCurrent
from api.streaming.openai_chunks import DONE_FRAME, usage_of
from api.streaming.sse import PING_FRAME, frame, sse_stream
from api.streaming.start import StartedGeneration, start_completion, wait_for_reply
from core.chat import default_model, route_for_model
from core.config import settings
from core.errors import NotFound
from core.plans import listed_models_for_plan, model_spec, plan_allows
from core.quota import counter_key, counter_ttl_seconds, ensure_period, subject_for_user
from core.streams import DELTA, ERROR
from models import UsageRecord, User

router = APIRouter(prefix="/api/v1/developer", tags=["compatibility"])

# `days` as /v1/developer/usage/history takes it (default and bounds).
HISTORY_DAYS = inspect.signature(developer.usage_history).parameters["days"].default
# SSE ends a line at CRLF, CR or LF: a text holding one goes out as several `data:` lines.
_SSE_LINE_BREAK = re.compile(r"\r\n|\r|\n")
CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"example": "data: Hello\n\ndata: !\n\ndata: [DONE]\n\n"}},
        "description": "The answer; with `stream` (the default) its text as server-sent events",
    },
    402: {"description": "Monthly quota spent (`quota_exceeded`)"},
    429: {"description": "Rate limited (`rate_limited`), with `Retry-After`"},
}
IN_PRODUCTION = settings.environment == "production"


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    operation_id="compat-api-v1-developer-create-api-key",
    summary="Create an API key (the full key is shown only in this answer)",
)
async def create_api_key(body: ApiKeyCreate, user: CurrentUser, session: SessionDep) -> ApiKeyOut:
    return await developer.create_api_key(body, user, session)


@router.get(
    "/api-keys",
    response_model=list[ApiKeyOut],
    status_code=200,
    operation_id="compat-api-v1-developer-list-api-keys",
    summary="List the API keys that are not revoked, newest first",
)
async def list_api_keys(user: CurrentUser, session: SessionDep, redis: RedisDep) -> list[ApiKeyOut]:
    return await developer.list_api_keys(user, session, redis)


@router.delete(
    "/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    operation_id="compat-api-v1-developer-revoke-api-key",
    summary="Revoke an API key; it stops working at once",
)
async def revoke_api_key(
    key_id: uuid.UUID, user: CurrentUser, session: SessionDep, redis: RedisDep
) -> Response:
    return await developer.revoke_api_key(key_id, user, session, redis)


@router.get(
    "/usage/current",
    response_model=UsageCurrent,
    status_code=200,
    operation_id="compat-api-v1-developer-get-usage-current",
    summary="This period's quota: used, remaining and when it renews (API key or JWT)",
)
async def usage_current(caller: Caller, session: SessionDep, redis: RedisDep) -> UsageCurrent:
    current = await developer.usage_current(caller, session, redis)
    return current.model_copy(update={"plan": shown_plan(current.plan)})


@router.get(
    "/usage/history",
    response_model=UsageHistory,
    status_code=200,
    operation_id="compat-api-v1-developer-get-usage-history",
    summary="Requests, tokens and cost per UTC day (API key or JWT)",
)
async def usage_history(
    caller: Caller, session: SessionDep, days: int = HISTORY_DAYS
) -> UsageHistory:
    history = await developer.usage_history(caller, session, days)
    return UsageHistory.model_validate(history.model_dump())


async def development_only() -> None:
    """A production service answers as if the route did not exist."""
    if IN_PRODUCTION:
        raise NotFound("Not Found")


@router.post(
    "/usage/reset-demo",
    response_model=DemoReset,
    status_code=200,
    operation_id="compat-api-v1-developer-reset-demo-quota",
    summary="Development only: set this period's used quota back to zero",
    dependencies=[Depends(development_only)],
    include_in_schema=not IN_PRODUCTION,
)
async def reset_demo_quota(user: CurrentUser, session: SessionDep, redis: RedisDep) -> DemoReset:
    await ensure_period(session, user)
    subject = subject_for_user(user)
    # Redis holds the live count (core/quota.py); PostgreSQL's copy is reset with it so a
    # lost counter is not re-seeded from the old figure.
    await session.execute(
        update(User)
        .where(User.id == user.id, User.quota_period_start_at == subject.period_start_at)
        .values(quota_used=0)
    )
    await session.commit()
    await redis.set(
        counter_key(user.id, subject.period_start_at),
        0,
        ex=counter_ttl_seconds(subject.reset_at),
    )
    return DemoReset(
        message="Demo quota reset successfully", quota_used=0, quota_total=subject.monthly_limit
    )


def _data_lines(text: str) -> bytes:
    return frame(_SSE_LINE_BREAK.sub("\ndata: ", text).encode())


async def _text_events(started: StartedGeneration) -> AsyncIterator[bytes]:
    """001's stream: the reply's text in `data:` lines, then `data: [DONE]`."""
    async for event in started.events():
        if event.is_ping:
            yield PING_FRAME
        elif event.event == DELTA and event.data.get("content"):
            yield _data_lines(event.data["content"])
        elif event.event == ERROR:
            error = {
                "detail": event.data.get("message", "The generation failed."),
                "code": event.data.get("code", "upstream_error"),
            }
            yield frame(orjson.dumps(error), event="error")
    yield DONE_FRAME


@router.post(
    "/chat",
    response_model=DeveloperChatAnswer,
    status_code=200,
    operation_id="compat-api-v1-developer-chat",
    summary="One message answered by a model of the plan, streamed by default (API key or JWT)",
    responses=CHAT_RESPONSES,
)
async def developer_chat(
    body: DeveloperChatRequest,
    caller: Caller,
    session: SessionDep,
    redis: RedisDep,
    response: Response,
) -> DeveloperChatAnswer | StreamingResponse:
    """A stateless generation through the same workers, quota and rate limits as
    `/v1/chat/completions`; `tokens_used` and `cost` are what was billed."""
    model = body.model
    if model is None or model_spec(model) is None:
        model = default_model(caller.plan)
    route = route_for_model(caller.plan, model)
    started = await start_completion(
        session,
        redis,
        caller=caller,
        route=route,
        request={"messages": [{"role": "user", "content": body.message}]},
        kind="completion",
    )
    if body.stream:
        return sse_stream(_text_events(started), started.headers)
    response.headers.update(started.headers)
    result = await wait_for_reply(started)
    # The worker writes the usage record before it ends the stream with `done`.
    cost = await session.scalar(
        select(UsageRecord.cost).where(UsageRecord.generation_id == started.generation_id)
    )
    return DeveloperChatAnswer(
        response=result.get("content") or "",
        model=route.model,
        tokens_used=usage_of(result)["total_tokens"],
        cost=float(cost or 0),
    )


@router.get(
    "/models",
    response_model=DeveloperModels,
    status_code=200,
    operation_id="compat-api-v1-developer-list-models",
    summary="The models the caller's plan may use; `free` marks the free plan's (API key or JWT)",
)
async def list_models(caller: Caller) -> DeveloperModels:
    models = []
    for name, target in listed_models_for_plan(caller.plan):
        spec = settings.models[target]
        models.append(
            DeveloperModel(
                id=name,
                name=spec.display_name or target,
                provider=spec.provider,
                free=plan_allows("free", name),
            )
        )
    return DeveloperModels(models=models)
