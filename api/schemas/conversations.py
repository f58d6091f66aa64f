"""Conversations, messages, chat requests and generations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.user import ReasoningEffort
from core.attachments import MAX_ATTACHMENTS_PER_TURN
from core.lifecycle import GenerationStatus, MessageStatus


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=200, examples=["Trip to Lisbon"])
    model: str | None = Field(default=None, max_length=200, examples=["deepseek-flash"])
    model_config_id: uuid.UUID | None = None
    system_prompt: str | None = Field(
        default=None, max_length=20_000, examples=["You are a concise travel guide."]
    )


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200, examples=["Lisbon, three days"])


class ConversationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: uuid.UUID
    title: str | None = Field(examples=["Trip to Lisbon"])
    model: str | None = Field(examples=["deepseek-flash"])
    model_config_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    total: int
    limit: int
    offset: int


class MessageAttachment(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    mime_type: str = Field(examples=["image/png"])
    size: int = Field(examples=[48213])


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    role: str = Field(examples=["assistant"])
    content: str = Field(examples=["Lisbon is hilly: bring good shoes."])
    reasoning: str | None = Field(
        default=None,
        description="The model's thinking text, when its provider streamed one",
        examples=["The user asks about Lisbon; its hills matter most."],
    )
    attachments: list[MessageAttachment] = Field(
        default_factory=list, description="The user's images"
    )
    status: str = Field(examples=[MessageStatus.COMPLETE.value])
    model: str | None = Field(examples=["deepseek-flash"])
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None = Field(
        default=None, description="Of the completion tokens, those spent thinking"
    )
    cached_tokens: int | None = Field(
        default=None, description="Of the prompt tokens, those read from the provider's cache"
    )
    created_at: datetime


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]
    has_more: bool


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=100_000, examples=["What should I see first?"])
    model: str | None = Field(default=None, max_length=200, examples=["deepseek-flash"])
    reasoning_effort: ReasoningEffort | None = Field(
        default=None,
        description="How hard a thinking model thinks; default from ai-config, else the "
        "model's own",
        examples=["low"],
    )
    attachments: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=MAX_ATTACHMENTS_PER_TURN,
        description="Images from `POST /v1/attachments`, the caller's own (another's or a "
        "missing one is 404 `not_found`); a model without vision answers 400 "
        "`unsupported_content`",
    )


class SocketChat(ChatRequest):
    """`{"type": "chat", "content", "model"?, "reasoning_effort"?, "attachments"?}` on the
    chat WebSocket:
    an HTTP turn's fields and limits."""

    # Unknown fields are ignored, as the socket always did: clients may tag their messages.
    model_config = ConfigDict(extra="ignore")

    type: Literal["chat"]


class SocketCancel(BaseModel):
    """`{"type": "cancel"}`: stop the reply being generated."""

    type: Literal["cancel"]


SocketMessage = Annotated[SocketChat | SocketCancel, Field(discriminator="type")]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # Null where the provider reported none.
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    # True when the provider reported no usage and the counts are our estimate.
    estimated: bool = False


class ChatAnswer(BaseModel):
    message: MessageOut
    usage: Usage
    generation_id: uuid.UUID


class GenerationOut(BaseModel):
    id: uuid.UUID
    status: str = Field(examples=[GenerationStatus.DONE.value])
    conversation_id: uuid.UUID | None
    model: str = Field(examples=["deepseek-flash"])
    error: str | None
    usage: Usage | None
    created_at: datetime
    finished_at: datetime | None
