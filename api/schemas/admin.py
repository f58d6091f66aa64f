"""Superuser operations on accounts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.user import UserOut


class AdminUserOut(UserOut):
    is_superuser: bool
    quota_used: int


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Literal["free", "pro", "max"] = Field(examples=["pro"])
    days: int | None = Field(
        default=None,
        ge=1,
        le=3660,
        description="How long a paid plan lasts (default 30); ignored for free",
        examples=[30],
    )
