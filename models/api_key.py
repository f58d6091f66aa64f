"""Developer API keys, stored only as a hash with a display prefix."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, CreatedAt, UUIDPk

if TYPE_CHECKING:
    from models.user import User


class ApiKey(UUIDPk, CreatedAt, Base):
    __tablename__ = "api_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    rate_limit: Mapped[int | None]
    expires_at: Mapped[datetime | None]
    is_active: Mapped[bool] = mapped_column(default=True, server_default="true")
    last_used_at: Mapped[datetime | None]
    total_requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    user: Mapped[User] = relationship(back_populates="api_keys")
