"""Superuser operations: look up an account, change its plan."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import CurrentUser, RedisDep, SessionDep
from api.schemas.admin import AdminUserOut, PlanChange
from core.api_keys import forget_user_keys
from core.errors import Forbidden, NotFound
from models import User


async def require_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise Forbidden("This needs a superuser.")
    return user


router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_superuser)])


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
)
async def set_plan(
    body: PlanChange, user: TargetUser, session: SessionDep, redis: RedisDep
) -> User:
    user.plan = body.plan
    await session.commit()
    # After the commit, so a key's next use re-reads the new plan instead of the cached one.
    await forget_user_keys(session, redis, user.id)
    return user
