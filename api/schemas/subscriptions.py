"""Plans, subscriptions and redemption codes (API.md, "Plans, subscriptions and
redemption codes")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PaidPlan = Literal["pro", "max"]


class PlanOffer(BaseModel):
    name: str = Field(examples=["pro"])
    price: float = Field(examples=[29])
    currency: str = Field(examples=["USD"])
    billing_cycle: Literal["monthly", "yearly"] = Field(examples=["monthly"])
    monthly_quota: int = Field(examples=[100000])
    rpm: int = Field(examples=[60])
    max_api_keys: int = Field(examples=[20])
    models: list[str] = Field(examples=[["deepseek-flash", "kimi-k2.6"]])


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    plan: str = Field(examples=["pro"])
    status: Literal["active", "cancelled", "expired", "pending"] = Field(examples=["active"])
    price: float = Field(examples=[29])
    currency: str = Field(examples=["USD"])
    billing_cycle: Literal["monthly", "yearly"] = Field(examples=["monthly"])
    started_at: datetime | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancelled_at: datetime | None
    cancel_at_period_end: bool
    source: Literal["admin", "code", "default"] = Field(examples=["code"])


class Redeem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=100, examples=["SBR-7KQ2M-XH4PD-9TWAE-LN3VC-R8FJY"])


class CodesCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: PaidPlan = Field(examples=["pro"])
    days: int = Field(ge=1, le=3660, examples=[30])
    count: int = Field(ge=1, le=1000, examples=[10])
    expires_in_days: int | None = Field(default=None, ge=1, le=3660, examples=[90])
    note: str | None = Field(default=None, max_length=500, examples=["Shop order 1042"])


class CodesCreated(BaseModel):
    codes: list[str] = Field(
        description="The codes themselves: shown this once, stored only hashed",
        examples=[["SBR-7KQ2M-XH4PD-9TWAE-LN3VC-R8FJY"]],
    )


class CodeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    prefix: str = Field(examples=["SBR-7KQ2M"])
    plan: str = Field(examples=["pro"])
    days: int = Field(examples=[30])
    note: str | None = Field(default=None, examples=["Shop order 1042"])
    created_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None
    redeemed_by: uuid.UUID | None


class CodePage(BaseModel):
    items: list[CodeOut]
    total: int
    limit: int
    offset: int
