"""The signed-in user: profile, email and password changes, plan, chat defaults."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

from core.accounts import USERNAME_MAX, USERNAME_MIN, USERNAME_RULE, normalize_username

# A username in a request: the rule lives in core/accounts.py; lengths count after NFKC,
# so they are documented here rather than checked on the raw string.
Username = Annotated[
    str,
    AfterValidator(normalize_username),
    Field(
        description=USERNAME_RULE,
        json_schema_extra={"minLength": USERNAME_MIN, "maxLength": USERNAME_MAX},
        examples=["ada", "小明"],
    ),
]
ReasoningEffort = Literal["none", "low", "medium", "high"]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    # A plain string: accounts created from an identity without a usable email carry a
    # placeholder under the reserved `.invalid` domain.
    email: str = Field(examples=["ada@example.com"])
    username: str = Field(examples=["ada"])
    full_name: str | None = Field(default=None, examples=["Ada Lovelace"])
    avatar_url: str | None = Field(default=None, examples=["https://example.com/ada.png"])
    bio: str | None = Field(default=None, examples=["Writes programs for engines."])
    plan: str = Field(examples=["free"])
    is_active: bool
    created_at: datetime


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username | None = None
    full_name: str | None = Field(default=None, max_length=200, examples=["Ada Lovelace"])
    avatar_url: str | None = Field(
        default=None, max_length=2048, pattern=r"^https?://", examples=["https://example.com/a.png"]
    )
    bio: str | None = Field(default=None, max_length=2000, examples=["Writes programs."])


class EmailChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=320, examples=["ada@example.org"])
    current_password: str = Field(min_length=1, max_length=1024, examples=["correct horse"])


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=1024, examples=["correct horse"])
    new_password: str = Field(min_length=8, max_length=1024, examples=["battery staple 42"])


class PlanOut(BaseModel):
    plan: str = Field(examples=["free"])
    monthly_quota: int = Field(examples=[10000])
    quota_used: int = Field(examples=[42])
    quota_remaining: int = Field(examples=[9958])
    quota_reset_at: datetime | None
    rpm: int = Field(examples=[20])
    max_api_keys: int = Field(examples=[5])
    models: list[str] = Field(examples=[["deepseek-flash", "deepseek-chat"]])


class AIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_model: str | None = Field(default=None, max_length=200, examples=["deepseek-flash"])
    model_config_id: uuid.UUID | None = Field(default=None, examples=[None])
    system_prompt: str | None = Field(
        default=None, max_length=20_000, examples=["You are a concise assistant."]
    )
    temperature: float | None = Field(default=None, ge=0, le=2, examples=[0.7])
    reasoning_effort: ReasoningEffort | None = Field(
        default=None,
        description="How hard a thinking model thinks; null leaves each model's own default",
        examples=["low"],
    )
