"""Anthropic Messages requests in our internal format: the OpenAI-format request the
worker stores and each adapter translates for its provider (workers/providers/).

On a Claude model the request reaches Anthropic nearly as it came: the Anthropic
adapter turns tool calls, tool results, image data URLs and an assistant turn's
`thinking_blocks` back into content blocks, and `thinking` passes through. On the
plan's other models it is the OpenAI-compatible request: `thinking` becomes a
reasoning effort, thinking text the turn's `reasoning_content`. Not carried:
`cache_control`, `top_k`, images inside tool results, document and server-tool blocks
(refused), `disable_parallel_tool_use`.
"""

from __future__ import annotations

import json
from typing import Any

from api.completions import provider_request
from api.schemas.anthropic import AnthropicMessageParam, CountTokensRequest, MessagesRequest
from api.schemas.openai import ChatCompletionRequest, ChatMessage
from core.chat import estimate_tokens
from core.errors import AppError
from core.providers import AdapterKind, provider_spec

TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
THINKING_TYPES = ("enabled", "adaptive", "disabled")
OUTPUT_EFFORTS = ("low", "medium", "high", "max")
# A thinking budget as another provider's reasoning effort: below these, low / medium.
EFFORT_BUDGETS = ((4096, "low"), (16_384, "medium"))
# What an image counts in an estimate: Anthropic's ~1.15 megapixel image, its largest
# unscaled size (the estimate does not decode images).
IMAGE_TOKENS = 1600


class UnsupportedBlock(AppError):
    status_code = 400
    code = "unsupported_content"


def chat_request(body: CountTokensRequest, provider: str) -> ChatCompletionRequest:
    """The Anthropic request as an OpenAI chat request, for `provider`'s adapter."""
    anthropic = provider_spec(provider).adapter is AdapterKind.ANTHROPIC
    messages: list[ChatMessage] = []
    system = _system_text(body.system)
    if system:
        messages.append(ChatMessage(role="system", content=system))
    for message in body.messages:
        messages.extend(_chat_messages(message, anthropic))
    params: dict[str, Any] = {}
    if body.tools:
        params["tools"] = [_tool(tool) for tool in body.tools]
        if body.tool_choice:
            params["tool_choice"] = _tool_choice(body.tool_choice)
    if body.thinking:
        kind = body.thinking.get("type")
        if kind not in THINKING_TYPES:
            raise AppError(f"thinking.type must be one of {', '.join(THINKING_TYPES)}.")
        if anthropic:
            params["thinking"] = body.thinking
        else:
            params["reasoning_effort"] = _effort(body.thinking)
    effort = (body.output_config or {}).get("effort")
    if effort is not None:
        if effort not in OUTPUT_EFFORTS:
            raise AppError(f"output_config.effort must be one of {', '.join(OUTPUT_EFFORTS)}.")
        # The highest effort our providers share is `high`.
        params["reasoning_effort"] = "high" if effort == "max" else effort
    if isinstance(body, MessagesRequest):
        params.update(
            stream=body.stream,
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_sequences or None,
        )
        user_id = (body.metadata or {}).get("user_id")
        if isinstance(user_id, str) and user_id:
            params["user"] = user_id[:256]
    return ChatCompletionRequest(model=body.model, messages=messages, **params)


def internal_request(body: MessagesRequest, provider: str) -> dict[str, Any]:
    """What the worker stores and sends: built as `/v1/chat/completions` builds it, so
    both routes reach a provider the same way."""
    return provider_request(chat_request(body, provider), provider)


def estimate_input_tokens(body: CountTokensRequest, provider: str) -> int:
    """`count_tokens`: an estimate over the request as the provider would get it. The
    API process never calls a provider, so Anthropic's own count endpoint is not used."""
    request = chat_request(body, provider)
    texts: list[str] = []
    images = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "image_url":
                    images += 1
                else:
                    texts.append(str(part.get("text", "")))
        elif content:
            texts.append(content)
        extra = message.model_extra or {}
        for name in ("tool_calls", "reasoning_content"):
            if extra.get(name):
                texts.append(json.dumps(extra[name]))
    if request.tools:
        texts.append(json.dumps(request.tools))
    # Each message's role and framing: a few tokens, as the chat history trimming counts.
    framing = 4 * len(request.messages)
    return estimate_tokens("".join(texts)) + framing + IMAGE_TOKENS * images


def _system_text(system: str | list[dict[str, Any]] | None) -> str:
    if isinstance(system, list):
        return "\n\n".join(_block_text(block) for block in system if block.get("type") == "text")
    return system or ""


def _block_text(block: dict[str, Any]) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise AppError("A text block needs its `text`.")
    return text


def _chat_messages(message: AnthropicMessageParam, anthropic: bool) -> list[ChatMessage]:
    if message.role == "system":
        text = (
            message.content
            if isinstance(message.content, str)
            else "".join(_block_text(block) for block in message.content)
        )
        return [ChatMessage(role="system", content=text)]
    if isinstance(message.content, str):
        return [ChatMessage(role=message.role, content=message.content)]
    if message.role == "assistant":
        return [_assistant_message(message.content, anthropic)]
    # Tool results first: in OpenAI's format they are messages of their own, answering
    # the assistant turn just before, and the rest of the user's turn follows them.
    results: list[ChatMessage] = []
    parts: list[dict[str, Any]] = []
    for block in message.content:
        kind = block.get("type")
        if kind == "tool_result":
            result = {
                "role": "tool",
                "tool_call_id": str(block.get("tool_use_id") or ""),
                "content": _tool_result_text(block.get("content")),
            }
            results.append(ChatMessage.model_validate(result))
        elif kind == "text":
            parts.append({"type": "text", "text": _block_text(block)})
        elif kind == "image":
            parts.append(_image_part(block))
        else:
            raise UnsupportedBlock(f"Content blocks of type {kind!r} are not supported here.")
    if not parts:
        return results
    if all(part["type"] == "text" for part in parts):
        # Plain text where it is only text: every OpenAI-compatible provider reads that.
        text = "".join(part["text"] for part in parts)
        return [*results, ChatMessage(role="user", content=text)]
    return [*results, ChatMessage(role="user", content=parts)]


def _assistant_message(blocks: list[dict[str, Any]], anthropic: bool) -> ChatMessage:
    """Text, tool calls and, for a later tool-use turn, the thinking: signed blocks for
    Anthropic (one sent back unsigned is left out, for the worker to restore the one it
    kept by the turn's tool-call ids), its text as `reasoning_content` for the others."""
    text: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            text.append(_block_text(block))
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name") or ""),
                        "arguments": json.dumps(block.get("input") or {}),
                    },
                }
            )
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking") or ""))
            if block.get("signature"):
                thinking.append(
                    {
                        "type": "thinking",
                        "thinking": str(block.get("thinking") or ""),
                        "signature": block["signature"],
                    }
                )
        elif kind == "redacted_thinking":
            thinking.append({"type": "redacted_thinking", "data": str(block.get("data") or "")})
        else:
            raise UnsupportedBlock(f"Content blocks of type {kind!r} are not supported here.")
    fields: dict[str, Any] = {}
    if tool_calls:
        fields["tool_calls"] = tool_calls
    if anthropic and thinking:
        fields["thinking_blocks"] = thinking
    elif not anthropic and reasoning:
        fields["reasoning_content"] = "".join(reasoning)
    content = "".join(text) or (None if tool_calls else "")
    return ChatMessage.model_validate({"role": "assistant", "content": content, **fields})


def _tool_result_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
    return content if isinstance(content, str) else ""


def _image_part(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64" and source.get("media_type") and source.get("data"):
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise UnsupportedBlock("An image needs a `base64` or `url` source.")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") not in (None, "custom") or not tool.get("name"):
        raise UnsupportedBlock(
            f"Only custom tools ({{name, input_schema}}) are supported, not {tool.get('type')!r}."
        )
    function: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> str | dict[str, Any]:
    kind = choice.get("type")
    if kind == "tool" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind in TOOL_CHOICES:
        return TOOL_CHOICES[kind]
    raise AppError("tool_choice.type must be auto, any, tool (with a name) or none.")


def _effort(thinking: dict[str, Any]) -> str | None:
    if thinking.get("type") == "disabled":
        return "none"
    if thinking.get("type") == "adaptive":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return "medium"
    return next((effort for limit, effort in EFFORT_BUDGETS if budget < limit), "high")
