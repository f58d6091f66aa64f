"""A user's chat defaults: model or own model config, system prompt, temperature,
reasoning effort."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps


class UserAIConfig(Timestamps, Base):
    __tablename__ = "user_ai_config"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    default_model: Mapped[str | None] = mapped_column(String(200))
    model_config_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("model_configs.id", ondelete="SET NULL")
    )
    system_prompt: Mapped[str | None] = mapped_column(Text)
    temperature: Mapped[float | None]
    # none | low | medium | high; null leaves each model's own default.
    reasoning_effort: Mapped[str | None] = mapped_column(String(16))
