"""The signed-in user: profile, email, password, plan and chat defaults."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from api.deps import AccessToken, CurrentUser, RedisDep, SessionDep
from api.schemas.user import (
    AIConfig,
    EmailChange,
    PasswordChange,
    PlanOut,
    ProfileUpdate,
    UserOut,
)
from core.accounts import change_email as change_user_email
from core.accounts import change_password as change_user_password
from core.accounts import username_taken, verify_password
from core.errors import Conflict, NotFound, Unauthorized
from core.login_limits import forget_login_attempts, reserve_login_attempt
from core.plans import allowed_model, listed_models_for_plan, plan_spec
from core.quota import current_used, durable_used, ensure_period, subject_for_user
from models import ModelConfig, User, UserAIConfig
from models.base import utcnow

router = APIRouter(prefix="/v1/user", tags=["user"])


async def _check_current_password(
    user: User, password: str, redis: RedisDep, request: Request
) -> None:
    # A stolen access token must not become an unlimited password oracle.
    ip_address = request.client.host if request.client else None
    await reserve_login_attempt(redis, user.email, ip_address)
    valid, _ = await verify_password(password, user.password_hash)
    if not valid:
        raise Unauthorized("The current password is incorrect.", code="invalid_credentials")
    await forget_login_attempts(redis, user.email, ip_address)


@router.get("/profile", response_model=UserOut, status_code=200, operation_id="user-get-profile")
async def get_profile(user: CurrentUser) -> User:
    return user


@router.put("/profile", response_model=UserOut, status_code=200, operation_id="user-update-profile")
async def update_profile(body: ProfileUpdate, user: CurrentUser, session: SessionDep) -> User:
    changes = body.model_dump(exclude_unset=True)
    username = changes.get("username")
    if username is not None and username.lower() != user.username.lower():
        if await username_taken(session, username):
            raise Conflict("That username is already taken.", code="username_taken")
    if "username" in changes and changes["username"] is None:
        # Every account keeps a username; null means "leave it".
        del changes["username"]
    for field, value in changes.items():
        setattr(user, field, value)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("That username is already taken.", code="username_taken") from None
    return user


@router.post("/email", response_model=UserOut, status_code=200, operation_id="user-change-email")
async def change_email(
    body: EmailChange, user: CurrentUser, session: SessionDep, redis: RedisDep, request: Request
) -> User:
    await _check_current_password(user, body.current_password, redis, request)
    return await change_user_email(session, user, body.email)


@router.post(
    "/password",
    status_code=204,
    response_class=Response,
    operation_id="user-change-password",
    summary="Change the password; every other session of the account is ended",
)
async def change_password(
    body: PasswordChange,
    authenticated: AccessToken,
    session: SessionDep,
    redis: RedisDep,
    request: Request,
) -> Response:
    user, claims = authenticated
    await _check_current_password(user, body.current_password, redis, request)
    await change_user_password(
        session, redis, user, body.new_password, keep_session=claims.session_id
    )
    return Response(status_code=204)


@router.get("/plan", response_model=PlanOut, status_code=200, operation_id="user-get-plan")
async def get_plan(user: CurrentUser, session: SessionDep, redis: RedisDep) -> PlanOut:
    await ensure_period(session, user)
    subject = subject_for_user(user)
    used = await current_used(redis, subject, lambda: durable_used(session, subject))
    spec = plan_spec(user.plan)
    return PlanOut(
        plan=user.plan,
        monthly_quota=spec.monthly_requests,
        quota_used=used,
        quota_remaining=max(spec.monthly_requests - used, 0),
        quota_reset_at=subject.reset_at,
        rpm=spec.rpm,
        max_api_keys=spec.max_api_keys,
        models=[name for name, _ in listed_models_for_plan(user.plan)],
    )


def _ai_config_out(config: UserAIConfig | None) -> AIConfig:
    if config is None:
        return AIConfig()
    return AIConfig.model_validate(config, from_attributes=True)


@router.get(
    "/ai-config", response_model=AIConfig, status_code=200, operation_id="user-get-ai-config"
)
async def get_ai_config(user: CurrentUser, session: SessionDep) -> AIConfig:
    return _ai_config_out(await session.get(UserAIConfig, user.id))


@router.put(
    "/ai-config", response_model=AIConfig, status_code=200, operation_id="user-update-ai-config"
)
async def update_ai_config(body: AIConfig, user: CurrentUser, session: SessionDep) -> AIConfig:
    if body.default_model is not None:
        allowed_model(user.plan, body.default_model)
    if body.model_config_id is not None:
        owned = await session.scalar(
            select(ModelConfig.id).where(
                ModelConfig.id == body.model_config_id, ModelConfig.user_id == user.id
            )
        )
        if owned is None:
            raise NotFound("Model config not found.")
    values = {
        "default_model": body.default_model,
        "model_config_id": body.model_config_id,
        "system_prompt": body.system_prompt,
        "temperature": body.temperature,
        "reasoning_effort": body.reasoning_effort,
    }
    # One statement: a read-then-insert lets concurrent first writes race to a duplicate key.
    config = await session.scalar(
        insert(UserAIConfig)
        .values(user_id=user.id, **values)
        .on_conflict_do_update(
            index_elements=[UserAIConfig.user_id],
            # The model's `onupdate` is not applied to a conflict's SET.
            set_={**values, "updated_at": utcnow()},
        )
        .returning(UserAIConfig),
        execution_options={"populate_existing": True},
    )
    await session.commit()
    return _ai_config_out(config)
