"""Request and answer shapes of the `/api/v1` compatibility API (documents 001 and 003).

Where both documents name one path, its answer carries both documents' fields; the
limits of every field are those of the `/v1` schemas the routes hand them to.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.auth import RegisterRequest
from api.schemas.conversations import ChatRequest
from api.schemas.user import ProfileUpdate, UserOut

# 001 sells its top plan as `enterprise`; ours is `max`.
PLAN_NAMES = {"max": "enterprise"}


def shown_plan(plan: str) -> str:
    return PLAN_NAMES.get(plan, plan)


def same_field(model: type[BaseModel], name: str) -> Any:
    """`model`'s field `name`, limits and examples included, for another model to declare."""
    return model.model_fields[name]


class ApiV1User(UserOut):
    """003's `UserResponse` and 001's `UserResponse` in one: the profile, the superuser
    flag and `updated_at` (003), the plan and this period's quota (001)."""

    plan: str = Field(examples=["free"], description="`enterprise` is the `max` plan")
    is_superuser: bool = False
    updated_at: datetime | None = None
    monthly_quota: int = Field(examples=[10000])
    quota_used: int = Field(examples=[42])
    quota_remaining: int = Field(examples=[9958])


class ApiV1Register(RegisterRequest):
    """001 sends `{email, password, full_name?}`, 003 `{email, username, password,
    full_name?, bio?}`."""

    bio: str | None = same_field(ProfileUpdate, "bio")


class ApiV1Registered(ApiV1User):
    """003 answers the new user; 001 a token and the user: both, in one object."""

    access_token: str = Field(examples=["eyJhbGciOi..."])
    refresh_token: str = Field(examples=["eyJhbGciOi..."])
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(examples=[3600])
    user: ApiV1User


class ApiV1Token(BaseModel):
    """003's `Token` and 001's `TokenResponse` (which adds the user)."""

    access_token: str = Field(examples=["eyJhbGciOi..."])
    refresh_token: str = Field(examples=["eyJhbGciOi..."])
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(examples=[3600])
    user: ApiV1User


class Message(BaseModel):
    message: str = Field(examples=["Successfully logged out"])


class DeveloperChatRequest(BaseModel):
    """001's `ChatRequest`: one user message, answered by the caller's plan."""

    model_config = ConfigDict(extra="forbid")

    message: str = same_field(ChatRequest, "content")
    model: str | None = Field(
        default=None,
        max_length=200,
        description="A model of the plan; omitted or unknown means the plan's default",
        examples=["deepseek-flash"],
    )
    stream: bool = Field(default=True, examples=[False])


class DeveloperChatAnswer(BaseModel):
    response: str = Field(examples=["Hello! How can I help?"])
    model: str = Field(examples=["deepseek-flash"])
    tokens_used: int = Field(examples=[42], description="The provider's total_tokens")
    cost: float = Field(examples=[0.0000336], description="USD, as recorded for billing")


class DeveloperModel(BaseModel):
    id: str = Field(examples=["deepseek-flash"])
    name: str = Field(examples=["DeepSeek V4.1 Flash"])
    provider: str = Field(examples=["deepseek"])
    type: Literal["chat"] = "chat"
    free: bool = Field(description="The free plan may use it")


class DeveloperModels(BaseModel):
    models: list[DeveloperModel]


class DailyUsage(BaseModel):
    date: date
    requests: int = Field(examples=[12])
    prompt_tokens: int = Field(examples=[3400])
    completion_tokens: int = Field(examples=[5100])
    cost: float = Field(examples=[0.00653])


class UsageHistory(BaseModel):
    """`/v1/developer/usage/history` with its money fields as JSON numbers."""

    daily_usage: list[DailyUsage]
    total_requests: int = Field(examples=[240])
    total_cost: float = Field(examples=[0.1306])
    period_start: date
    period_end: date


class DemoReset(BaseModel):
    message: str = Field(examples=["Demo quota reset successfully"])
    quota_used: int = Field(examples=[0])
    quota_total: int = Field(examples=[10000])
