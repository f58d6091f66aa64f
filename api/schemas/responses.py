"""OpenAI Responses API request shape (`POST /v1/responses`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ReasoningConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class ResponseRequest(BaseModel):
    # Parameters a compatible server does not support are ignored, as OpenAI SDKs expect.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        description="A catalogue model, or `auto` for the plan's default",
        examples=["deepseek-flash"],
    )
    input: str | list[dict[str, Any]] = Field(
        description="A user message's text, or input items: messages (`input_text`, "
        "`input_image`), `function_call` and `function_call_output` items",
        examples=["Hello!"],
    )
    instructions: str | None = Field(
        default=None,
        description="Sent as the system message; not carried over by `previous_response_id`",
    )
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        description="Function tools: `{type: function, name, description, parameters}`",
    )
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    reasoning: ReasoningConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, examples=[1024])
    previous_response_id: str | None = Field(
        default=None, description="A stored response of the caller's to continue"
    )
    store: bool = Field(
        default=True, description="Keep the response for `GET` and `previous_response_id`"
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    metadata: dict[str, str] | None = None
    user: str | None = Field(default=None, max_length=256)
