"""Anthropic Messages API shapes: the `/v1/messages` request, its answer and the
`count_tokens` request and answer. Content blocks stay plain objects here, checked and
translated in api/anthropic_messages.py (the block types a client may send grow with
every API version; one place says which we carry)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AnthropicMessageParam(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Claude Code also sends `system` messages between the turns (reminders).
    role: Literal["user", "assistant", "system"] = Field(examples=["user"])
    content: str | list[dict[str, Any]] = Field(
        description="Text, or content blocks: `text`, `image`, `tool_use`, `tool_result`, "
        "`thinking`, `redacted_thinking`",
        examples=["Hello, Claude"],
    )


class CountTokensRequest(BaseModel):
    # Fields of newer API versions (and betas) that we do not carry are ignored, as the
    # `anthropic-beta` header that asks for them is.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="Any model of the caller's plan", examples=["claude-sonnet-5-5"])
    messages: list[AnthropicMessageParam] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = Field(
        default=None, description="Text, or `text` blocks"
    )
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="Custom tools: `{name, description?, input_schema}`"
    )
    tool_choice: dict[str, Any] | None = Field(
        default=None, description="`{type: auto|any|none}` or `{type: tool, name}`"
    )
    thinking: dict[str, Any] | None = Field(
        default=None,
        description="`{type: enabled, budget_tokens}`, `{type: adaptive}` or "
        "`{type: disabled}`; on other providers' models, a reasoning effort",
    )
    output_config: dict[str, Any] | None = Field(
        default=None, description="`{effort: low|medium|high|max}`: the reasoning effort"
    )


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1, examples=[1024])
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, description="Accepted, not carried")
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = Field(
        default=None, description="`{user_id}`, passed on as the end user's id"
    )


class AnthropicUsage(BaseModel):
    input_tokens: int = Field(description="Input tokens not read from a cache", examples=[12])
    output_tokens: int = Field(examples=[30])
    cache_read_input_tokens: int = Field(default=0, examples=[0])
    cache_creation_input_tokens: int = Field(default=0, examples=[0])


class AnthropicMessage(BaseModel):
    id: str = Field(examples=["msg_6f1c2b0e9a7d4c1e8b3a5d7f9e2c4b6a"])
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str = Field(examples=["claude-sonnet-5-5"])
    content: list[dict[str, Any]] = Field(
        description="`thinking` / `redacted_thinking`, `text` and `tool_use` blocks",
        examples=[[{"type": "text", "text": "Hello!"}]],
    )
    stop_reason: str | None = Field(
        description="`end_turn`, `max_tokens`, `tool_use` or `refusal`", examples=["end_turn"]
    )
    stop_sequence: str | None = None
    usage: AnthropicUsage


class InputTokens(BaseModel):
    input_tokens: int = Field(description="An estimate (about four characters a token)")
