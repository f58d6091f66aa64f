"""Plans people hold: subscriptions (a plan for a period) and the redemption codes that
grant them. The rules that write them live in core/subscriptions.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column

from core.lifecycle import check_in
from models.base import Base, CreatedAt, Timestamps, UUIDPk


class SubscriptionStatus(StrEnum):
    # In force (`cancel_at_period_end` says whether it ends at its period's end).
    ACTIVE = "active"
    # Waiting for the subscription before it to end.
    PENDING = "pending"
    # Ended: cancelled (or replaced) before its time, or cancelled and then run out.
    CANCELLED = "cancelled"
    # Ended: its period ran out.
    EXPIRED = "expired"


class SubscriptionSource(StrEnum):
    ADMIN = "admin"
    CODE = "code"


class Subscription(UUIDPk, Timestamps, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(check_in("status", SubscriptionStatus), name="status"),
        CheckConstraint(check_in("source", SubscriptionSource), name="source"),
        CheckConstraint("plan IN ('free', 'pro', 'max')", name="plan"),
        CheckConstraint("billing_cycle IN ('monthly', 'yearly')", name="billing_cycle"),
        CheckConstraint("current_period_end > current_period_start", name="period"),
        # At most one subscription in force per user (the rules also lock the user row).
        Index(
            "uq_subscriptions_user_id_active",
            "user_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
        # The expiry job's scan: what is in force, by end.
        Index(
            "ix_subscriptions_active_period_end",
            "current_period_end",
            postgresql_where=text("status = 'active'"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    plan: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    billing_cycle: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False, server_default="false")
    source: Mapped[str] = mapped_column(String(16))
    redemption_code_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("redemption_codes.id", ondelete="SET NULL")
    )


class RedemptionCode(UUIDPk, CreatedAt, Base):
    __tablename__ = "redemption_codes"
    __table_args__ = (
        CheckConstraint("plan IN ('pro', 'max')", name="plan"),
        CheckConstraint("days > 0", name="days"),
        Index("ix_redemption_codes_created_at", "created_at"),
    )

    # SHA-256 of the normalised code; the code itself is shown once and never stored.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    plan: Mapped[str] = mapped_column(String(16))
    days: Mapped[int]
    note: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    expires_at: Mapped[datetime | None]
    redeemed_at: Mapped[datetime | None]
    redeemed_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
