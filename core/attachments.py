"""Uploaded images: what a file is (from its bytes), and where the bytes are kept.

`AttachmentStore` is the one place that reads or writes image bytes; today they
sit in PostgreSQL (`attachments.bytes`), and an object store can replace this
class without touching the routes or the workers. No FastAPI or Celery here.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from models import Attachment, Message, MessageAttachment

# A conversation turn carries at most this many images (API.md).
MAX_ATTACHMENTS_PER_TURN = 8
# An upload no message refers to is removed after this long.
ORPHAN_AFTER = timedelta(days=1)
# The magic numbers of the formats every vision provider reads. SVG is left out on
# purpose: it is a document that can carry script, not an image.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# Enough of a file's head to tell its type.
SNIFF_BYTES = 12
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def sniff_image_type(head: bytes) -> str | None:
    """The image type its first bytes name, or None: the name and the declared type of
    an upload are never trusted."""
    for signature, mime_type in _SIGNATURES:
        if head.startswith(signature):
            return mime_type
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def data_url(mime_type: str, data: bytes) -> str:
    """An image as an OpenAI `image_url` part's `data:` URL (base64)."""
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass(frozen=True)
class ImageRef:
    """A message's image as the history sees it: no bytes until it is sent."""

    id: uuid.UUID
    mime_type: str
    size: int


class AttachmentStore:
    """Image rows and their bytes (PostgreSQL `bytea`)."""

    async def put(
        self, session: AsyncSession, user_id: uuid.UUID, mime_type: str, data: bytes, sha256: str
    ) -> Attachment:
        attachment = Attachment(
            user_id=user_id, mime_type=mime_type, size=len(data), sha256=sha256, data=data
        )
        session.add(attachment)
        await session.commit()
        return attachment

    async def get(
        self, session: AsyncSession, user_id: uuid.UUID, attachment_id: uuid.UUID
    ) -> tuple[Attachment, bytes] | None:
        """The user's own image and its bytes; another user's is None, as a missing one."""
        row = (
            await session.execute(
                select(Attachment, Attachment.data).where(
                    Attachment.id == attachment_id, Attachment.user_id == user_id
                )
            )
        ).one_or_none()
        return (row[0], row[1]) if row is not None else None

    async def owned(
        self, session: AsyncSession, user_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of `ids` are the user's own images."""
        if not ids:
            return set()
        found = await session.scalars(
            select(Attachment.id).where(Attachment.id.in_(ids), Attachment.user_id == user_id)
        )
        return set(found)

    async def delete(
        self, session: AsyncSession, user_id: uuid.UUID, attachment_id: uuid.UUID
    ) -> bool:
        """Delete the user's own image (the messages that showed it lose it); False when
        there was none."""
        deleted = await session.scalar(
            delete(Attachment)
            .where(Attachment.id == attachment_id, Attachment.user_id == user_id)
            .returning(Attachment.id)
        )
        await session.commit()
        return deleted is not None

    async def delete_for_conversation(
        self, session: AsyncSession, conversation_id: uuid.UUID
    ) -> None:
        """The images of a conversation's messages, unless a message of another
        conversation shows them too. The caller commits, with the conversation's deletion."""
        here = (
            select(MessageAttachment.attachment_id)
            .join(Message, Message.id == MessageAttachment.message_id)
            .where(Message.conversation_id == conversation_id)
        )
        elsewhere = (
            select(MessageAttachment.attachment_id)
            .join(Message, Message.id == MessageAttachment.message_id)
            .where(
                Message.conversation_id != conversation_id,
                MessageAttachment.attachment_id == Attachment.id,
            )
        )
        await session.execute(delete(Attachment).where(Attachment.id.in_(here), ~exists(elsewhere)))

    def load(self, session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, bytes]:
        """The bytes of these images, for a worker about to send them (sync session)."""
        wanted = list(ids)
        if not wanted:
            return {}
        rows = session.execute(
            select(Attachment.id, Attachment.data).where(Attachment.id.in_(wanted))
        )
        return {row.id: row.data for row in rows}

    def delete_orphans(self, session: Session, now: datetime) -> int:
        """Remove the uploads older than ORPHAN_AFTER that no message refers to."""
        linked = select(MessageAttachment.attachment_id).where(
            MessageAttachment.attachment_id == Attachment.id
        )
        result = session.execute(
            delete(Attachment)
            .where(Attachment.created_at < now - ORPHAN_AFTER, ~exists(linked))
            .returning(Attachment.id)
        )
        return len(result.all())


attachment_store = AttachmentStore()
