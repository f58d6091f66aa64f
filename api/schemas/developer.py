"""Developer platform: API keys and usage answers."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["ci-bot"])
    description: str | None = Field(default=None, max_length=500, examples=["Nightly evals"])
    # The key's own requests per minute, on top of (never above) the plan's rpm.
    rate_limit: int | None = Field(default=None, ge=1, le=100_000, examples=[10])
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, examples=[90])


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str = Field(examples=["ci-bot"])
    description: str | None = Field(examples=["Nightly evals"])
    key_prefix: str = Field(examples=["sk-sb-Xq3Ld9"])
    is_active: bool
    rate_limit: int | None = Field(examples=[10])
    total_requests: int = Field(examples=[1234])
    last_used_at: datetime | None
    created_at: datetime
    expires_at: datetime | None
    is_expired: bool


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(
        description="The full key. Shown only in this answer; store it now.",
        examples=["sk-sb-Xq3Ld9Vb0w7K2mYtQJc5hNfR8sUoPzEaGiT1lW4yHdB"],
    )


class UsageCurrent(BaseModel):
    plan: str = Field(examples=["free"])
    quota_used: int = Field(examples=[420])
    quota_total: int = Field(examples=[10000])
    quota_remaining: int = Field(examples=[9580])
    quota_percentage: float = Field(examples=[4.2])
    quota_reset_at: datetime
    days_until_reset: int = Field(examples=[17])


class DailyUsage(BaseModel):
    date: date
    requests: int = Field(examples=[12])
    prompt_tokens: int = Field(examples=[3400])
    completion_tokens: int = Field(examples=[5100])
    cost: Decimal = Field(examples=["0.00653"])


class UsageHistory(BaseModel):
    daily_usage: list[DailyUsage]
    total_requests: int = Field(examples=[240])
    total_cost: Decimal = Field(examples=["0.1306"])
    period_start: date
    period_end: date
