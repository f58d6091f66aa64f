"""Developer platform: create, list and revoke API keys; current quota and usage history."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import Date, cast, func, select

from api.deps import Caller, CurrentUser, RedisDep, SessionDep
from api.schemas.developer import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    DailyUsage,
    UsageCurrent,
    UsageHistory,
)
from core import api_keys
from core.api_keys import is_expired, pending_use, revoke_cached
from core.errors import NotFound
from core.quota import current_used, durable_used
from models import ApiKey, UsageRecord

router = APIRouter(prefix="/v1/developer", tags=["developer"])


def _key_out(
    key: ApiKey, pending: tuple[int, datetime | None] = (0, None), full_key: str | None = None
) -> ApiKeyOut:
    count, used_at = pending
    last_used = max((t for t in (key.last_used_at, used_at) if t), default=None)
    fields: dict[str, Any] = {
        "id": key.id,
        "name": key.name,
        "description": key.description,
        "key_prefix": key.key_prefix,
        "is_active": key.is_active,
        "rate_limit": key.rate_limit,
        "total_requests": key.total_requests + count,
        "last_used_at": last_used,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "is_expired": is_expired(key.expires_at),
    }
    return ApiKeyCreated(**fields, key=full_key) if full_key else ApiKeyOut(**fields)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    operation_id="developer-create-api-key",
    summary="Create an API key (the full key is shown only in this answer)",
)
async def create_api_key(body: ApiKeyCreate, user: CurrentUser, session: SessionDep) -> ApiKeyOut:
    created = await api_keys.create_api_key(
        session,
        user.id,
        name=body.name,
        description=body.description,
        rate_limit=body.rate_limit,
        expires_in_days=body.expires_in_days,
    )
    return _key_out(created.row, full_key=created.full_key)


@router.get(
    "/api-keys",
    response_model=list[ApiKeyOut],
    status_code=200,
    operation_id="developer-list-api-keys",
    summary="List the API keys that are not revoked, newest first",
)
async def list_api_keys(user: CurrentUser, session: SessionDep, redis: RedisDep) -> list[ApiKeyOut]:
    keys = (
        await session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.is_active)
            .order_by(ApiKey.created_at.desc())
        )
    ).all()
    pending = await pending_use(redis, (k.id for k in keys))
    return [_key_out(k, pending[k.id]) for k in keys]


@router.delete(
    "/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    operation_id="developer-revoke-api-key",
    summary="Revoke an API key; every replica refuses it from now on",
)
async def revoke_api_key(
    key_id: uuid.UUID, user: CurrentUser, session: SessionDep, redis: RedisDep
) -> Response:
    key = await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user.id, ApiKey.is_active)
    )
    if key is None:
        raise NotFound("API key not found.")
    key.is_active = False
    await session.commit()
    await revoke_cached(redis, key.key_hash)
    return Response(status_code=204)


@router.get(
    "/usage/current",
    response_model=UsageCurrent,
    status_code=200,
    operation_id="developer-get-usage-current",
    summary="This period's quota: used, remaining and when it renews (API key or JWT)",
)
async def usage_current(caller: Caller, session: SessionDep, redis: RedisDep) -> UsageCurrent:
    used = await current_used(redis, caller, lambda: durable_used(session, caller))
    total = caller.monthly_limit
    until_reset = caller.reset_at - datetime.now(UTC)
    return UsageCurrent(
        plan=caller.plan,
        quota_used=used,
        quota_total=total,
        quota_remaining=max(total - used, 0),
        quota_percentage=round(min(used / total, 1) * 100, 2) if total else 100.0,
        quota_reset_at=caller.reset_at,
        days_until_reset=max(math.ceil(until_reset / timedelta(days=1)), 0),
    )


@router.get(
    "/usage/history",
    response_model=UsageHistory,
    status_code=200,
    operation_id="developer-get-usage-history",
    summary="Requests, tokens and cost per UTC day, from the billing records (API key or JWT)",
)
async def usage_history(
    caller: Caller,
    session: SessionDep,
    days: int = Query(default=30, ge=1, le=90, description="How many days, today included"),
) -> UsageHistory:
    period_end = datetime.now(UTC).date()
    period_start = period_end - timedelta(days=days - 1)
    record_day = cast(func.timezone("UTC", UsageRecord.created_at), Date)
    per_day = (
        select(
            record_day.label("day"),
            func.count(UsageRecord.id).label("requests"),
            func.sum(UsageRecord.prompt_tokens).label("prompt_tokens"),
            func.sum(UsageRecord.completion_tokens).label("completion_tokens"),
            func.sum(UsageRecord.cost).label("cost"),
        )
        .where(
            UsageRecord.user_id == caller.user_id,
            UsageRecord.created_at
            >= datetime.combine(period_start, datetime.min.time(), tzinfo=UTC),
        )
        .group_by(record_day)
        .subquery()
    )
    calendar_days = (
        func.generate_series(period_start, period_end, timedelta(days=1))
        .table_valued("value")
        .render_derived(name="calendar_days")
    )
    calendar_day = cast(calendar_days.c.value, Date)
    rows = (
        await session.execute(
            select(
                calendar_day.label("date"),
                func.coalesce(per_day.c.requests, 0),
                func.coalesce(per_day.c.prompt_tokens, 0),
                func.coalesce(per_day.c.completion_tokens, 0),
                func.coalesce(per_day.c.cost, 0),
            )
            .select_from(calendar_days.outerjoin(per_day, per_day.c.day == calendar_day))
            .order_by(calendar_day)
        )
    ).all()
    daily = [
        DailyUsage(
            date=day,
            requests=requests,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=cost,
        )
        for day, requests, prompt, completion, cost in rows
    ]
    return UsageHistory(
        daily_usage=daily,
        total_requests=sum(d.requests for d in daily),
        total_cost=sum((d.cost for d in daily), Decimal(0)),
        period_start=period_start,
        period_end=period_end,
    )
