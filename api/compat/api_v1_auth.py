"""`/api/v1/auth/*`, the paths documents 001 (AI-Hub) and 003 (user system) share:
register, login (JSON or OAuth2 form), refresh (body or query), me, logout. Each
answer carries both documents' fields; the work is `/v1/auth`'s own routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api.compat.api_v1_schemas import (
    ApiV1Register,
    ApiV1Registered,
    ApiV1Token,
    ApiV1User,
    Message,
    shown_plan,
)
from api.deps import AccessToken, CurrentUser, RedisDep, SessionDep
from api.routes import auth
from api.routes.user import get_plan
from api.schemas.auth import RefreshRequest, RegisterRequest, TokenPair
from api.schemas.user import UserOut
from models import User

router = APIRouter(prefix="/api/v1", tags=["compatibility"])


async def user_answer(user: User, session: AsyncSession, redis: RedisDep) -> ApiV1User:
    """Both documents' user: the `/v1` profile, plus the quota `/v1/user/plan` reports."""
    plan = await get_plan(user, session, redis)
    return ApiV1User(
        **(UserOut.model_validate(user).model_dump() | {"plan": shown_plan(user.plan)}),
        is_superuser=user.is_superuser,
        updated_at=user.updated_at,
        monthly_quota=plan.monthly_quota,
        quota_used=plan.quota_used,
        quota_remaining=plan.quota_remaining,
    )


async def _token_answer(pair: TokenPair, session: AsyncSession, redis: RedisDep) -> ApiV1Token:
    user = await session.get(User, pair.user.id)
    assert user is not None
    return ApiV1Token(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        user=await user_answer(user, session, redis),
    )


@router.post(
    "/auth/register",
    response_model=ApiV1Registered,
    status_code=201,
    operation_id="compat-api-v1-auth-register",
    summary="Create an account: the new user (003) with a signed-in token pair (001)",
)
async def register(
    body: ApiV1Register, session: SessionDep, redis: RedisDep, request: Request
) -> ApiV1Registered:
    pair = await auth.register(
        RegisterRequest.model_validate(body.model_dump(exclude={"bio"})), session, request
    )
    if body.bio is not None:
        user = await session.get(User, pair.user.id)
        assert user is not None
        user.bio = body.bio
        await session.commit()
    token = await _token_answer(pair, session, redis)
    return ApiV1Registered(
        **token.user.model_dump(),
        access_token=token.access_token,
        refresh_token=token.refresh_token,
        expires_in=token.expires_in,
        user=token.user,
    )


@router.post(
    "/auth/login",
    response_model=ApiV1Token,
    status_code=200,
    operation_id="compat-api-v1-auth-login",
    summary="Sign in with JSON `{email, password}` (001) or the OAuth2 password form (003)",
    # The same two bodies as /v1/auth/login, whose route reads them.
    openapi_extra=auth._LOGIN_BODY_DOC,
)
async def login(request: Request, session: SessionDep, redis: RedisDep) -> ApiV1Token:
    return await _token_answer(await auth.login(request, session, redis), session, redis)


@router.post(
    "/auth/refresh",
    response_model=ApiV1Token,
    status_code=200,
    operation_id="compat-api-v1-auth-refresh",
    summary="Trade a refresh token, from the query (003) or the body, for a new pair",
)
async def refresh(
    session: SessionDep,
    redis: RedisDep,
    body: RefreshRequest | None = None,
    refresh_token: Annotated[
        str | None, Query(min_length=1, max_length=4096, description="003 sends it here")
    ] = None,
) -> ApiV1Token:
    token = body.refresh_token if body is not None else refresh_token
    if token is None:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "refresh_token"),
                    "msg": "Field required",
                    "type": "missing",
                    "input": None,
                }
            ]
        )
    pair = await auth.refresh(RefreshRequest(refresh_token=token), session, redis)
    return await _token_answer(pair, session, redis)


@router.get(
    "/auth/me",
    response_model=ApiV1User,
    status_code=200,
    operation_id="compat-api-v1-auth-me",
    summary="The signed-in user (001)",
)
async def me(user: CurrentUser, session: SessionDep, redis: RedisDep) -> ApiV1User:
    return await user_answer(user, session, redis)


@router.post(
    "/auth/logout",
    response_model=Message,
    status_code=200,
    operation_id="compat-api-v1-auth-logout",
    summary="End this session: its access and refresh tokens stop working at once",
)
async def logout(authenticated: AccessToken, session: SessionDep, redis: RedisDep) -> Message:
    await auth.logout(authenticated, session, redis)
    return Message(message="Successfully logged out")
