"""Conversations and their messages."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.lifecycle import MessageStatus, check_in
from models.base import Base, CreatedAt, Timestamps, UUIDPk

if TYPE_CHECKING:
    from models.attachment import Attachment
    from models.user import User


class Conversation(UUIDPk, Timestamps, Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_id_updated_at", "user_id", "updated_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(String(200))
    # True once the title came from the title job; a user-set title is never replaced.
    title_generated: Mapped[bool] = mapped_column(default=False, server_default="false")
    model: Mapped[str | None] = mapped_column(String(200))
    model_config_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("model_configs.id", ondelete="SET NULL")
    )
    system_prompt: Mapped[str | None] = mapped_column(Text)

    user: Mapped[User] = relationship(back_populates="conversations")
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Message.id",
    )


class Message(CreatedAt, Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        CheckConstraint(check_in("status", MessageStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # core/lifecycle.py's MessageStatus: a reply cut short keeps its generation's end.
    status: Mapped[str] = mapped_column(
        String(16), default=MessageStatus.COMPLETE, server_default=MessageStatus.COMPLETE.value
    )
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    # Of the completion tokens, those spent thinking; of the prompt, those read from cache.
    reasoning_tokens: Mapped[int | None]
    cached_tokens: Mapped[int | None]
    # The model's thinking text, when its provider streamed one.
    reasoning: Mapped[str | None] = mapped_column(Text)
    # What a later turn must send back to the provider: Anthropic's signed thinking
    # blocks (`{"thinking_blocks": [...]}`), unchanged.
    provider_blocks: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    # A user message's images, in the order attached. Never loaded implicitly (the API is
    # async): queries that answer with messages load it with `selectinload`.
    attachments: Mapped[list[Attachment]] = relationship(
        secondary="message_attachments",
        order_by="MessageAttachment.position",
        viewonly=True,
        lazy="raise",
    )
