"""Superuser operations: look up an account, set its plan, make and list redemption codes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import ColumnElement, func, select

from api.deps import CurrentUser, RedisDep, SessionDep
from api.schemas.admin import AdminUserOut, PlanChange
from api.schemas.subscriptions import CodePage, CodesCreate, CodesCreated
from core.api_keys import forget_user_keys
from core.errors import Forbidden, NotFound
from core.subscriptions import admin_set_plan, create_codes
from models import RedemptionCode, User

PG_BIGINT_MAX = 2**63 - 1


async def require_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise Forbidden("This needs a superuser.")
    return user


router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_superuser)])
Admin = Annotated[User, Depends(require_superuser)]


async def _user_or_404(session: SessionDep, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found.")
    return user


TargetUser = Annotated[User, Depends(_user_or_404)]


@router.get(
    "/users/{user_id}", response_model=AdminUserOut, status_code=200, operation_id="admin-get-user"
)
async def get_user(user: TargetUser) -> User:
    return user


@router.put(
    "/users/{user_id}/plan",
    response_model=AdminUserOut,
    status_code=200,
    operation_id="admin-set-plan",
    summary="Set a plan: a paid one as a subscription of `days` (30) from now; free ends it",
)
async def set_plan(
    body: PlanChange, user: TargetUser, session: SessionDep, redis: RedisDep
) -> User:
    changed = await session.run_sync(
        admin_set_plan, user.id, body.plan, body.days, datetime.now(UTC)
    )
    await session.commit()
    # After the commit, so a key's next use re-reads the new plan instead of the cached one.
    await forget_user_keys(session, redis, user.id)
    return changed


@router.post(
    "/redemption-codes",
    response_model=CodesCreated,
    status_code=201,
    operation_id="admin-create-redemption-codes",
    summary="Make redemption codes; the answer is the only time they are shown",
)
async def create_redemption_codes(
    body: CodesCreate, admin: Admin, session: SessionDep
) -> CodesCreated:
    codes = await session.run_sync(
        lambda sync: create_codes(
            sync,
            plan=body.plan,
            days=body.days,
            count=body.count,
            created_by=admin.id,
            now=datetime.now(UTC),
            expires_in_days=body.expires_in_days,
            note=body.note,
        )
    )
    await session.commit()
    return CodesCreated(codes=codes)


@router.get(
    "/redemption-codes",
    response_model=CodePage,
    status_code=200,
    operation_id="admin-list-redemption-codes",
)
async def list_redemption_codes(
    session: SessionDep,
    status: Annotated[Literal["unused", "used", "expired"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=PG_BIGINT_MAX)] = 0,
) -> dict:
    now = datetime.now(UTC)
    unexpired = RedemptionCode.expires_at.is_(None) | (RedemptionCode.expires_at > now)
    conditions: list[ColumnElement[bool]] = []
    if status == "used":
        conditions = [RedemptionCode.redeemed_at.is_not(None)]
    elif status == "unused":
        conditions = [RedemptionCode.redeemed_at.is_(None), unexpired]
    elif status == "expired":
        conditions = [RedemptionCode.redeemed_at.is_(None), ~unexpired]
    total = await session.scalar(
        select(func.count()).select_from(RedemptionCode).where(*conditions)
    )
    items = await session.scalars(
        select(RedemptionCode)
        .where(*conditions)
        .order_by(RedemptionCode.created_at.desc(), RedemptionCode.id)
        .limit(limit)
        .offset(offset)
    )
    return {"items": list(items), "total": total or 0, "limit": limit, "offset": offset}
