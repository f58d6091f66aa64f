"""Billing facts: one row per finished generation; usage history aggregates these."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, Numeric, String, func
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    # Unique: a redelivered task can never bill one generation twice.
    generation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("generations.id", ondelete="SET NULL"), unique=True
    )
    model: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    # Of the prompt: read from the provider's cache, written to it (each its own price).
    cached_tokens: Mapped[int] = mapped_column(default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(default=0, server_default="0")
    # Of the completion: spent thinking (billed as output).
    reasoning_tokens: Mapped[int] = mapped_column(default=0, server_default="0")
    cost: Mapped[Decimal] = mapped_column(Numeric(14, 8), default=Decimal("0"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)
