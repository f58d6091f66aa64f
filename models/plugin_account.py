"""The plug-in-api account each user gets; its key is encrypted and never shown."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps, UUIDPk


class PluginAccount(UUIDPk, Timestamps, Base):
    __tablename__ = "plugin_accounts"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    plugin_user_id: Mapped[str | None] = mapped_column(String(100))
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    # pending | active | failed
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_used_at: Mapped[datetime | None]
