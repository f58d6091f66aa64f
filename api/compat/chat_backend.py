"""The chat-backend document's API (shared/seeds/002-chat-backend.md), at `/auth` and
`/conversations`: its paths and field names over the `/v1` routes and core services.

Each route translates names and shapes and calls the `/v1` route function or the core
function that owns the rule; nothing here decides what `/v1` decides. The document
leaves out the current password on email and password changes: without it, the change
is accepted only from a session signed in within the last 10 minutes
(core/reauthentication.py); with it, the `/v1` check runs.
"""

from __future__ import annotations

import uuid
from copy import copy
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from api.deps import (
    AccessToken,
    CurrentUser,
    OwnedConversation,
    OwnedModelConfig,
    RedisDep,
    SessionDep,
)
from api.routes import auth as auth_routes
from api.routes import conversations as conversation_routes
from api.routes import model_configs as model_config_routes
from api.routes import user as user_routes
from api.schemas.auth import LoginRequest, RegisterRequest, TokenPair
from api.schemas.conversations import (
    ChatAnswer,
    ConversationCreate,
    ConversationDetail,
    ConversationOut,
    ConversationPage,
)
from api.schemas.model_configs import ModelConfigCreate, ModelConfigUpdate
from api.schemas.user import EmailChange, PasswordChange, ProfileUpdate, Username, UserOut
from core.accounts import change_email as change_user_email
from core.accounts import change_password as change_user_password
from core.errors import NotFound
from core.reauthentication import ensure_recent_sign_in
from core.ssrf import UnsafeURL
from models import Conversation, ModelConfig, User

TAG = "compatibility"
router = APIRouter(tags=[TAG])

# The SSRF check resolves names; an address literal keeps the example usable offline.
MODEL_URL_EXAMPLE = "https://1.1.1.1/v1"


def _rules_of(
    model: type[BaseModel], name: str, *, required: bool = True, examples: list[Any] | None = None
) -> Any:
    """The `/v1` field's constraints and examples, for the same value under this
    document's name: one rule, declared once."""
    info: FieldInfo = copy(model.model_fields[name])
    info.default = PydanticUndefined if required else None
    if examples is not None:
        info.examples = examples
    return info


V1Body = TypeVar("V1Body", bound=BaseModel)


def _as_v1(schema: type[V1Body], names: dict[str, str] | None = None, /, **fields: Any) -> V1Body:
    """The `/v1` body for the document's fields (`names`: /v1 name to the document's).

    The fields above carry the same rules, so this refuses only where a `/v1` schema
    gained a check of its own (a validator); the refusal names the document's field.
    """
    try:
        return schema(**fields)
    except ValidationError as exc:
        names = names or {}
        issues = [
            {**error, "loc": ("body", *(names.get(str(p), p) for p in error["loc"]))}
            for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(issues) from None


# --- schemas: the document's names -------------------------------------------------


class UsernameChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username


class EmailChangeRequest(BaseModel):
    """`{email}` as in the document; `current_password` makes a session of any age do."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr = _rules_of(EmailChange, "email")
    current_password: str | None = _rules_of(EmailChange, "current_password", required=False)


class PasswordChangeRequest(BaseModel):
    """`{password}` (the new one) as in the document; `current_password` as above."""

    model_config = ConfigDict(extra="forbid")

    password: str = _rules_of(PasswordChange, "new_password")
    current_password: str | None = _rules_of(PasswordChange, "current_password", required=False)


class ConfigCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_url: str = _rules_of(ModelConfigCreate, "base_url", examples=[MODEL_URL_EXAMPLE])
    model_name: str = _rules_of(ModelConfigCreate, "model")
    api_key: SecretStr = _rules_of(ModelConfigCreate, "api_key")


class ConfigUpdate(BaseModel):
    """The fields to change; an omitted `api_key` keeps the stored one."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_url: str | None = _rules_of(
        ModelConfigUpdate, "base_url", required=False, examples=[MODEL_URL_EXAMPLE]
    )
    model_name: str | None = _rules_of(ModelConfigUpdate, "model", required=False)
    api_key: SecretStr | None = _rules_of(ModelConfigUpdate, "api_key", required=False)


class ConfigOut(BaseModel):
    """A model config without its key: at most the key's last 4 characters."""

    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: uuid.UUID
    model_url: str = Field(validation_alias="base_url", examples=[MODEL_URL_EXAMPLE])
    model_name: str = Field(validation_alias="model", examples=["llama-3.1-70b"])
    name: str = Field(examples=["llama-3.1-70b"])
    api_key_hint: str = Field(examples=["9f3a"])
    created_at: datetime
    updated_at: datetime


class Done(BaseModel):
    message: str = Field(examples=["Signed out."])


# --- auth ---------------------------------------------------------------------------


@router.post(
    "/auth/register",
    response_model=TokenPair,
    status_code=status.HTTP_201_CREATED,
    operation_id="chat-backend-register",
    summary="Create an account (`{username, email, password}`)",
)
async def register(body: RegisterRequest, session: SessionDep, request: Request) -> TokenPair:
    return await auth_routes.register(body, session, request)


@router.post(
    "/auth/login",
    response_model=TokenPair,
    operation_id="chat-backend-login",
    summary="Sign in with `{email, password}`",
)
async def login(
    body: LoginRequest, request: Request, session: SessionDep, redis: RedisDep
) -> TokenPair:
    # The /v1 route reads the credentials from the request (its body is cached there).
    return await auth_routes.login(request, session, redis)


@router.get("/auth/me", response_model=UserOut, operation_id="chat-backend-me")
async def me(user: CurrentUser) -> User:
    return user


@router.post(
    "/auth/logout",
    response_model=Done,
    operation_id="chat-backend-logout",
    summary="End this session: its access and refresh tokens stop working at once",
)
async def logout(authenticated: AccessToken, session: SessionDep, redis: RedisDep) -> Done:
    await auth_routes.logout(authenticated, session, redis)
    return Done(message="Signed out.")


@router.post(
    "/auth/me/username",
    response_model=UserOut,
    operation_id="chat-backend-change-username",
)
async def change_username(body: UsernameChange, user: CurrentUser, session: SessionDep) -> User:
    changes = _as_v1(ProfileUpdate, username=body.username)
    return await user_routes.update_profile(changes, user, session)


@router.post(
    "/auth/me/email",
    response_model=UserOut,
    operation_id="chat-backend-change-email",
    summary="Change the email: with `current_password`, or from a session signed in within "
    "the last 10 minutes (else 403 `reauthentication_required`)",
)
async def change_email(
    body: EmailChangeRequest,
    authenticated: AccessToken,
    session: SessionDep,
    redis: RedisDep,
    request: Request,
) -> User:
    user, claims = authenticated
    if body.current_password is not None:
        checked = _as_v1(EmailChange, email=body.email, current_password=body.current_password)
        return await user_routes.change_email(checked, user, session, redis, request)
    await ensure_recent_sign_in(session, claims.session_id)
    return await change_user_email(session, user, body.email)


@router.post(
    "/auth/me/password",
    response_model=Done,
    operation_id="chat-backend-change-password",
    summary="Change the password (every other session ends): with `current_password`, or "
    "from a session signed in within the last 10 minutes (else 403 "
    "`reauthentication_required`)",
)
async def change_password(
    body: PasswordChangeRequest,
    authenticated: AccessToken,
    session: SessionDep,
    redis: RedisDep,
    request: Request,
) -> Done:
    if body.current_password is not None:
        checked = _as_v1(
            PasswordChange,
            {"new_password": "password"},
            current_password=body.current_password,
            new_password=body.password,
        )
        await user_routes.change_password(checked, authenticated, session, redis, request)
        return Done(message="Password changed.")
    user, claims = authenticated
    await ensure_recent_sign_in(session, claims.session_id)
    await change_user_password(session, redis, user, body.password, keep_session=claims.session_id)
    return Done(message="Password changed.")


# --- model configs ------------------------------------------------------------------


CONFIG_NAMES = {"base_url": "model_url", "model": "model_name"}


def _named_model_url(exc: UnsafeURL) -> UnsafeURL:
    # The same refusal, naming the field as this document's client sent it.
    return UnsafeURL(exc.detail.replace("base_url", "model_url"), loc=("body", "model_url"))


@router.get("/auth/config", response_model=list[ConfigOut], operation_id="chat-backend-configs")
async def list_configs(user: CurrentUser, session: SessionDep) -> list[ModelConfig]:
    return await model_config_routes.list_model_configs(user, session)


@router.post(
    "/auth/config/create",
    response_model=ConfigOut,
    status_code=status.HTTP_201_CREATED,
    operation_id="chat-backend-create-config",
    summary="Add an OpenAI-compatible endpoint (`model_url`, `model_name`, `api_key`)",
)
async def create_config(body: ConfigCreate, user: CurrentUser, session: SessionDep) -> ModelConfig:
    translated = _as_v1(
        ModelConfigCreate,
        CONFIG_NAMES,
        base_url=body.model_url,
        model=body.model_name,
        api_key=body.api_key,
    )
    try:
        return await model_config_routes.create_model_config(translated, user, session)
    except UnsafeURL as exc:
        raise _named_model_url(exc) from None


@router.post(
    "/auth/config/{config_id}/update",
    response_model=ConfigOut,
    operation_id="chat-backend-update-config",
)
async def update_config(
    body: ConfigUpdate, config: OwnedModelConfig, session: SessionDep
) -> ModelConfig:
    translated = _as_v1(
        ModelConfigUpdate,
        CONFIG_NAMES,
        base_url=body.model_url,
        model=body.model_name,
        api_key=body.api_key,
    )
    try:
        return await model_config_routes.update_model_config(translated, config, session)
    except UnsafeURL as exc:
        raise _named_model_url(exc) from None


# --- conversations and chat ---------------------------------------------------------


# Routes that are the /v1 ones at this document's paths: the /v1 function itself, so its
# parameters, limits and answer are declared once.
router.add_api_route(
    "/conversations",
    conversation_routes.list_conversations,
    methods=["GET"],
    response_model=ConversationPage,
    operation_id="chat-backend-conversations",
    summary="The user's conversations, newest activity first (the /v1 page object)",
)


@router.post(
    "/conversations/create",
    response_model=ConversationOut,
    status_code=status.HTTP_201_CREATED,
    operation_id="chat-backend-create-conversation",
    summary="Start a conversation; the body (`{title}`) may be left out",
)
async def create_conversation(
    user: CurrentUser, session: SessionDep, body: ConversationCreate | None = None
) -> Conversation:
    return await conversation_routes.create_conversation(
        body or ConversationCreate(), user, session
    )


router.add_api_route(
    "/conversations/{conversation_id}",
    conversation_routes.get_conversation,
    methods=["GET"],
    response_model=ConversationDetail,
    operation_id="chat-backend-conversation-messages",
    summary="A conversation with a page of its messages (oldest first), before `before_id`",
)


@router.post(
    "/conversations/{conversation_id}/delete",
    response_model=Done,
    operation_id="chat-backend-delete-conversation",
    summary="Delete a conversation with its messages",
)
async def delete_conversation(conversation: OwnedConversation, session: SessionDep) -> Done:
    await conversation_routes.delete_conversation(conversation, session)
    return Done(message="Conversation deleted.")


for path, operation_id, summary in (
    ("chat", "chat-backend-chat", "Send a message; answers once the reply is complete"),
    ("messages", "chat-backend-send-message", "Send a message (the same as `/chat`)"),
):
    router.add_api_route(
        f"/conversations/{{conversation_id}}/{path}",
        conversation_routes.chat,
        methods=["POST"],
        response_model=ChatAnswer,
        operation_id=operation_id,
        summary=summary,
    )


# The /v1 socket's handler and protocol (`?token=`, typed JSON messages), at this path.
router.add_api_websocket_route(
    "/conversations/ws/{conversation_id}",
    conversation_routes.chat_socket,
    name="chat-backend-conversation-socket",
)


async def _no_such_path(rest: str) -> None:
    raise NotFound("Not Found")


# `..%2F` under these prefixes decodes to a path that climbs back to the console's root
# (`/conversations/../` is `/`), which would answer its index page. Paths ending in `/`
# are never routes here (redirect_slashes is off): answer them as the unknown paths they are.
for _prefix in ("/auth", "/conversations"):
    router.add_api_route(
        _prefix + "/{rest:path}/", _no_such_path, methods=["GET"], include_in_schema=False
    )
