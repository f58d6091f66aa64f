"""OpenAI-compatible shapes: the model list, chat completion requests and answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelCapabilities(BaseModel):
    vision: bool = Field(description="Reads images", examples=[True])
    reasoning: bool = Field(description="Thinks before answering", examples=[True])
    tools: bool = Field(description="Calls tools", examples=[True])


class OpenAIModel(BaseModel):
    id: str = Field(examples=["deepseek-flash"])
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time; 0, the catalogue has no dates", examples=[0])
    owned_by: str = Field(examples=["deepseek"])
    capabilities: ModelCapabilities
    context_window: int = Field(examples=[1_048_576])
    alias_of: str | None = Field(
        default=None,
        description="For an old or client-built name: the current model it reaches",
        examples=[None],
    )


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class ChatMessage(BaseModel):
    # OpenAI clients send fields we pass on untouched (name, tool_calls, tool_call_id, and
    # an assistant turn's `reasoning_content` and Anthropic `thinking_blocks`).
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(examples=["user"])
    content: str | list[dict[str, Any]] | None = Field(default=None, examples=["Hello!"])


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # Parameters a compatible server does not support are ignored, as OpenAI SDKs expect.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        description="A catalogue model, or `auto` for the plan's default",
        examples=["deepseek-flash"],
    )
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2, examples=[0.7])
    max_tokens: int | None = Field(default=None, ge=1, examples=[512])
    max_completion_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    user: str | None = Field(default=None, max_length=256)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "low", "medium", "high"] | None = Field(
        default=None,
        description="How hard a thinking model thinks; `none` turns thinking off where "
        "the model allows it. Unset: the model's own default",
        examples=["medium"],
    )
    thinking: dict[str, Any] | None = Field(
        default=None,
        description="A provider's own thinking control, passed through as is "
        '(DeepSeek and Kimi `{"type": "disabled"}`, Anthropic `{"type": "adaptive"}`)',
    )


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(
        description="Read from the provider's cache (billed at its cache-read price)",
        examples=[1024],
    )


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = Field(description="Spent thinking", examples=[256])


class CompletionUsage(BaseModel):
    prompt_tokens: int = Field(examples=[12])
    completion_tokens: int = Field(examples=[30])
    total_tokens: int = Field(examples=[42])
    # Present whenever the provider reported them.
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class FunctionCall(BaseModel):
    name: str = Field(examples=["get_weather"])
    arguments: str = Field(
        description="JSON text, as the model wrote it", examples=['{"city": "Paris"}']
    )


class ToolCall(BaseModel):
    id: str = Field(examples=["call_abc123"])
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = Field(examples=["Hello! How can I help?"])
    reasoning_content: str | None = Field(
        default=None,
        description="A thinking model's reasoning, when its provider gave one",
        examples=[None],
    )
    thinking_blocks: list[dict[str, Any]] | None = Field(
        default=None,
        description="Anthropic models: the signed `thinking` / `redacted_thinking` blocks, "
        "to send back unchanged with a tool-call turn",
        examples=[None],
    )
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None = Field(
        description="`stop`, `length` or `tool_calls`, as the provider ended", examples=["stop"]
    )


class ChatCompletion(BaseModel):
    id: str = Field(examples=["chatcmpl-6f1c2b0e9a7d4c1e8b3a5d7f9e2c4b6a"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(examples=[1735689600])
    model: str = Field(examples=["deepseek-flash"])
    choices: list[Choice]
    usage: CompletionUsage
