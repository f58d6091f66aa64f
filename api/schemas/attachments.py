"""Uploaded images."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AttachmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    mime_type: str = Field(description="Decided from the bytes", examples=["image/png"])
    size: int = Field(description="Bytes", examples=[48213])
    created_at: datetime
