"""FastAPI dependencies as `Annotated` aliases: session, Redis, the current user, the caller."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, TypeVar

import redis.asyncio as aioredis
from fastapi import Depends
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
    OAuth2PasswordBearer,
)
from sqlalchemy.ext.asyncio import AsyncSession

from core.api_keys import authenticate_api_key, looks_like_api_key
from core.db import async_session_factory
from core.errors import NotFound, Unauthorized
from core.quota import QuotaSubject, ensure_period, subject_for_user
from core.redis import redis_client
from core.security import TokenClaims, decode_token, revoked_session_key
from models import Conversation, Generation, ModelConfig, User

Owned = TypeVar("Owned", Conversation, Generation, ModelConfig)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with async_session_factory()() as session:
        yield session


# Async although it awaits nothing: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hand-off on every request.
async def get_redis() -> aioredis.Redis:
    return redis_client()


SessionDep = Annotated[AsyncSession, Depends(get_session)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]

bearer_scheme = HTTPBearer(auto_error=False, description="JWT access token or developer API key")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("Authentication is required.", code="token_invalid")
    return credentials.credentials


async def authenticate_access_token(
    token: str, session: AsyncSession, redis: aioredis.Redis
) -> tuple[User, TokenClaims]:
    """Validate an access JWT, refuse revoked sessions, and load an active user."""
    claims = decode_token(token, "access")
    if await redis.exists(revoked_session_key(claims.session_id)):
        raise Unauthorized("The session has ended.", code="token_invalid")
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account is not active.", code="token_invalid")
    return user, claims


# Declared so /docs' Authorize button can sign in with email and password; the token it
# then sends arrives in the same Authorization header that `bearer_scheme` reads.
password_flow = OAuth2PasswordBearer(
    tokenUrl="/v1/auth/login", auto_error=False, description="Email as username, and password"
)


async def get_token_claims(
    credentials: BearerDep,
    session: SessionDep,
    redis: RedisDep,
    _documented: Annotated[str | None, Depends(password_flow)],
) -> tuple[User, TokenClaims]:
    return await authenticate_access_token(_bearer_token(credentials), session, redis)


async def get_current_user(
    authenticated: Annotated[tuple[User, TokenClaims], Depends(get_token_claims)],
) -> User:
    return authenticated[0]


AccessToken = Annotated[tuple[User, TokenClaims], Depends(get_token_claims)]
CurrentUser = Annotated[User, Depends(get_current_user)]


async def fetch_owned(
    session: AsyncSession, model: type[Owned], resource_id: uuid.UUID, user: User, label: str
) -> Owned:
    """The user's own row, or 404: another user's resource is never revealed as existing."""
    row = await session.get(model, resource_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"{label} not found.")
    return row


async def get_owned_conversation(
    conversation_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Conversation:
    return await fetch_owned(session, Conversation, conversation_id, user, "Conversation")


async def get_owned_generation(
    generation_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Generation:
    return await fetch_owned(session, Generation, generation_id, user, "Generation")


async def get_owned_model_config(
    config_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> ModelConfig:
    return await fetch_owned(session, ModelConfig, config_id, user, "Model config")


OwnedConversation = Annotated[Conversation, Depends(get_owned_conversation)]
OwnedGeneration = Annotated[Generation, Depends(get_owned_generation)]
OwnedModelConfig = Annotated[ModelConfig, Depends(get_owned_model_config)]


async def get_caller(
    credentials: BearerDep,
    session: SessionDep,
    redis: RedisDep,
    _documented: Annotated[str | None, Depends(password_flow)],
) -> QuotaSubject:
    """A developer API key (no PostgreSQL query once cached) or a JWT access token."""
    token = _bearer_token(credentials)
    if looks_like_api_key(token):
        return await authenticate_api_key(token, session, redis)
    user, _ = await authenticate_access_token(token, session, redis)
    await ensure_period(session, user)
    return subject_for_user(user)


# Routes marked "key ok" in API.md: who is charged, with their plan and key.
Caller = Annotated[QuotaSubject, Depends(get_caller)]


# Anthropic's SDKs (and Claude Code) send the key as `x-api-key`.
x_api_key_scheme = APIKeyHeader(
    name="x-api-key", auto_error=False, description="Developer API key (Anthropic-style)"
)


async def get_key_header_caller(
    x_api_key: Annotated[str | None, Depends(x_api_key_scheme)],
    credentials: BearerDep,
    session: SessionDep,
    redis: RedisDep,
) -> QuotaSubject:
    """`get_caller` for the Anthropic-compatible routes: `x-api-key: <key>` or, as
    everywhere, `Authorization: Bearer <key or JWT>`."""
    if x_api_key:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=x_api_key)
    return await get_caller(credentials, session, redis, None)


# The Anthropic-compatible routes' caller (API.md: "key ok", `x-api-key` too).
KeyHeaderCaller = Annotated[QuotaSubject, Depends(get_key_header_caller)]
