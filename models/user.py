"""People who sign in: identity, profile, plan and the synced monthly quota counter."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, Timestamps, UUIDPk

if TYPE_CHECKING:
    from models.api_key import ApiKey
    from models.auth_session import AuthSession
    from models.conversation import Conversation
    from models.model_config import ModelConfig
    from models.oauth_identity import OAuthIdentity


class User(UUIDPk, Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("plan IN ('free', 'pro', 'max')", name="plan"),)

    # Stored lower-cased, which makes the unique constraint case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # NFKC-normalised, case kept; unique regardless of case (the index below).
    username: Mapped[str] = mapped_column(String(50))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(200))
    avatar_url: Mapped[str | None] = mapped_column(String(2048))
    bio: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[str] = mapped_column(String(16), default="free", server_default="free")
    is_active: Mapped[bool] = mapped_column(default=True, server_default="true")
    is_superuser: Mapped[bool] = mapped_column(default=False, server_default="false")
    quota_period_start_at: Mapped[datetime | None]
    quota_reset_at: Mapped[datetime | None]
    quota_used: Mapped[int] = mapped_column(default=0, server_default="0")

    sessions: Mapped[list[AuthSession]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    identities: Mapped[list[OAuthIdentity]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    model_configs: Mapped[list[ModelConfig]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    conversations: Mapped[list[Conversation]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


# What makes usernames unique case-insensitively (core/accounts.py compares the same way).
Index("uq_users_username_lower", func.lower(User.username), unique=True)
