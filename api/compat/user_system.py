"""Document 003 (the user system): `/api/v1/users/me` and `/api/v1/users/{id}`.
Its `/api/v1/auth/*` routes are api/compat/api_v1_auth.py's, shared with 001."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.compat.api_v1_auth import user_answer
from api.compat.api_v1_schemas import ApiV1User
from api.deps import CurrentUser, RedisDep, SessionDep
from api.routes.user import update_profile
from api.schemas.user import ProfileUpdate
from core.errors import NotFound
from models import User

router = APIRouter(prefix="/api/v1/users", tags=["compatibility"])


@router.get(
    "/me",
    response_model=ApiV1User,
    status_code=200,
    operation_id="compat-api-v1-users-get-me",
    summary="The signed-in user",
)
async def read_user_me(user: CurrentUser, session: SessionDep, redis: RedisDep) -> ApiV1User:
    return await user_answer(user, session, redis)


@router.put(
    "/me",
    response_model=ApiV1User,
    status_code=200,
    operation_id="compat-api-v1-users-update-me",
    summary="Change the profile: `full_name`, `bio`, `avatar_url` (and `username`)",
)
async def update_user_me(
    body: ProfileUpdate, user: CurrentUser, session: SessionDep, redis: RedisDep
) -> ApiV1User:
    return await user_answer(await update_profile(body, user, session), session, redis)


@router.get(
    "/{user_id}",
    response_model=ApiV1User,
    status_code=200,
    operation_id="compat-api-v1-users-get",
    summary="A user by id: one's own, or anyone's for a superuser",
)
async def read_user_by_id(
    user_id: uuid.UUID, user: CurrentUser, session: SessionDep, redis: RedisDep
) -> ApiV1User:
    # 404, not 003's 403: another account's id is never confirmed to exist.
    found = user if user_id == user.id else None
    if found is None and user.is_superuser:
        found = await session.get(User, user_id)
    if found is None:
        raise NotFound("User not found.")
    return await user_answer(found, session, redis)
