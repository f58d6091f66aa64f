"""One LLM generation: its lifecycle, timings and usage; the unit a worker claims."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.lifecycle import GenerationStatus, check_in
from models.base import Base, CreatedAt, UUIDPk


class Generation(UUIDPk, CreatedAt, Base):
    __tablename__ = "generations"
    __table_args__ = (
        Index("ix_generations_status_queued_at", "status", "queued_at"),
        Index("ix_generations_user_id_created_at", "user_id", "created_at"),
        CheckConstraint(check_in("status", GenerationStatus), name="status"),
    )

    # Null for stateless completions (`/v1/chat/completions`).
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    model_config_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("model_configs.id", ondelete="SET NULL")
    )
    user_message_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("messages.id", ondelete="SET NULL")
    )
    assistant_message_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("messages.id", ondelete="SET NULL")
    )
    # chat | completion | plugin
    kind: Mapped[str] = mapped_column(String(16), default="chat", server_default="chat")
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    # The state machine is core/lifecycle.py's.
    status: Mapped[str] = mapped_column(
        String(16), default=GenerationStatus.QUEUED, server_default=GenerationStatus.QUEUED.value
    )
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(32))
    # Stateless completions keep the request (messages and parameters) here.
    request: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    reasoning_tokens: Mapped[int | None]
    cached_tokens: Mapped[int | None]
    usage_estimated: Mapped[bool] = mapped_column(default=False, server_default="false")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    first_token_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
