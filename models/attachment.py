"""Uploaded images and the messages that carry them.

The bytes live in PostgreSQL for now; only core/attachments.py reads or writes them,
so an object store can take over without touching the routes. A message lists its
images through `message_attachments` (a join table, not an array column: the foreign
keys cascade both ways and the orphan sweep is one NOT EXISTS).
"""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, UUIDPk


class Attachment(UUIDPk, CreatedAt, Base):
    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_user_id_created_at", "user_id", "created_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    mime_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    # Deferred: listing a message's images never drags their bytes along.
    data: Mapped[bytes] = mapped_column("bytes", LargeBinary, deferred=True)


class MessageAttachment(Base):
    __tablename__ = "message_attachments"

    message_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    attachment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("attachments.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # The order the user attached them in.
    position: Mapped[int] = mapped_column(SmallInteger)
