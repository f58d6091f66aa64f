"""Anthropic Messages API: OpenAI-format history translated to content blocks (system
apart, tool calls as `tool_use`, tool results as `tool_result`, signed thinking kept
for tool-use turns), typed stream events back to stream items, usage in parts."""

from __future__ import annotations

import json
from typing import Any

from workers.providers.base import (
    Emit,
    Finish,
    HttpRequest,
    ProviderCall,
    ProviderError,
    Reasoning,
    StreamItem,
    ThinkingBlock,
    Usage,
    build_request,
    chunk_json,
    fetch_json,
)
from workers.providers.sse import EndOfStream
from workers.providers.stream_client import sse_stream
from workers.providers.tool_calls import ToolCallDelta

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# Thinking counts towards max_tokens: leave it room when the caller set no ceiling.
THINKING_MAX_TOKENS = 16_384
# Anthropic's stop reasons in OpenAI's words; the rest (end_turn, stop_sequence) are `stop`.
FINISH_REASONS = {"max_tokens": "length", "tool_use": "tool_calls"}
# Adaptive thinking, its text summarized: the newest models' default display ("omitted")
# streams thinking blocks with empty text, and the client is owed the reasoning.
ADAPTIVE_THINKING = {"type": "adaptive", "display": "summarized"}
# `reasoning_effort: none` where a model cannot turn thinking off: Opus 5.5 and Fable
# refuse `disabled` (the lowest effort instead), Sonnet 5.5's lowest is `between_tools`.
NO_THINKING: dict[str, dict[str, Any]] = {
    "claude-opus-5-5": {"thinking": ADAPTIVE_THINKING, "output_config": {"effort": "low"}},
    "claude-fable-": {"thinking": ADAPTIVE_THINKING, "output_config": {"effort": "low"}},
    "claude-sonnet-5-5": {"thinking": {"type": "between_tools"}},
}
TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


class Anthropic:
    name = "anthropic"

    def _request(self, call: ProviderCall, stream: bool) -> HttpRequest:
        system, messages = translate_messages(call.messages)
        body: dict[str, Any] = {"model": call.model, "messages": messages, "stream": stream}
        if system:
            body["system"] = system
        body.update(_thinking_params(call, stream))
        thinking = body.get("thinking", {}).get("type") not in (None, "disabled")
        body["max_tokens"] = call.max_tokens or (
            THINKING_MAX_TOKENS if thinking else DEFAULT_MAX_TOKENS
        )
        # Anthropic refuses sampling changes while thinking (top_p only below 0.95).
        if call.temperature is not None and not thinking:
            body["temperature"] = call.temperature
        top_p = call.extra.get("top_p")
        if top_p is not None and (not thinking or top_p >= 0.95):
            body["top_p"] = top_p
        stop = call.extra.get("stop")
        if stop:
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if call.extra.get("user"):
            body["metadata"] = {"user_id": call.extra["user"]}
        if call.extra.get("tools"):
            body["tools"] = [_tool(tool) for tool in call.extra["tools"]]
        tool_choice = _tool_choice(call.extra.get("tool_choice"), thinking)
        if tool_choice and body.get("tools"):
            body["tool_choice"] = tool_choice
        headers = {"x-api-key": call.api_key, "anthropic-version": API_VERSION}
        return build_request(call, "/v1/messages", headers, body)

    async def stream(self, call: ProviderCall, emit: Emit) -> None:
        usage: dict[str, Any] = {}
        blocks: dict[int, dict[str, Any]] = {}  # open blocks by their index in the message
        tool_calls = 0

        def on_event(event: str | None, data: bytes) -> None:
            nonlocal tool_calls
            payload = chunk_json(data)
            kind = payload.get("type", event)
            if kind == "content_block_delta":
                block = blocks.get(payload.get("index", 0), {})
                item = _delta_item(block, payload.get("delta") or {})
                if item is not None:
                    emit(item)
            elif kind == "message_start":
                usage.update((payload.get("message") or {}).get("usage") or {})
            elif kind == "content_block_start":
                block = dict(payload.get("content_block") or {})
                blocks[payload.get("index", 0)] = block
                if block.get("type") == "tool_use":
                    block["tool_index"] = tool_calls
                    tool_calls += 1
                    emit(
                        ToolCallDelta(
                            {
                                "index": block["tool_index"],
                                "id": block.get("id", ""),
                                "type": "function",
                                "function": {"name": block.get("name", ""), "arguments": ""},
                            }
                        )
                    )
                elif block.get("type") == "text" and block.get("text"):
                    emit(block["text"])
            elif kind == "content_block_stop":
                finished = _finished_thinking(blocks.pop(payload.get("index", 0), {}))
                if finished:
                    emit(finished)
            elif kind == "message_delta":
                # Cumulative counts: a later value replaces an earlier one.
                usage.update(payload.get("usage") or {})
                stop_reason = (payload.get("delta") or {}).get("stop_reason")
                if stop_reason:
                    emit(Finish(FINISH_REASONS.get(stop_reason, "stop")))
            elif kind == "error":
                message = (payload.get("error") or {}).get("message", "stream error")
                raise ProviderError(f"anthropic: {message}")
            elif kind == "message_stop":
                raise EndOfStream

        await sse_stream(self._request(call, True), call, self.name, on_event)
        emit(usage_of(usage))

    def complete(self, call: ProviderCall) -> tuple[str, Usage]:
        """The reply's text only (thinking is left out: titles are made from this)."""
        body = fetch_json(self._request(call, False), call, self.name)
        text = "".join(
            block.get("text", "")
            for block in body.get("content") or []
            if block.get("type") == "text"
        )
        usage = body.get("usage")
        return text, usage_of(usage if isinstance(usage, dict) else {})


def _delta_item(block: dict[str, Any], delta: dict[str, Any]) -> StreamItem | None:
    """A content block delta's item, if it makes one; a thinking block's text and
    signature are also kept on `block`, which is sent back whole once it ends."""
    kind = delta.get("type")
    if kind == "text_delta" and delta.get("text"):
        return delta["text"]
    if kind == "thinking_delta" and delta.get("thinking"):
        block["thinking"] = block.get("thinking", "") + delta["thinking"]
        return Reasoning(delta["thinking"])
    if kind == "signature_delta":
        block["signature"] = block.get("signature", "") + delta.get("signature", "")
    elif kind == "input_json_delta" and delta.get("partial_json") and "tool_index" in block:
        return ToolCallDelta(
            {"index": block["tool_index"], "function": {"arguments": delta["partial_json"]}}
        )
    return None


def _finished_thinking(block: dict[str, Any]) -> ThinkingBlock | None:
    """The whole block a later tool-use turn must send back unchanged."""
    if block.get("type") == "thinking":
        return ThinkingBlock(
            {
                "type": "thinking",
                "thinking": block.get("thinking", ""),
                "signature": block.get("signature", ""),
            }
        )
    if block.get("type") == "redacted_thinking":
        return ThinkingBlock({"type": "redacted_thinking", "data": block.get("data", "")})
    return None


def usage_of(raw: dict[str, Any]) -> Usage:
    """Anthropic's usage in ours: `input_tokens` counts only uncached input, so the
    prompt is input + cache reads + cache writes; thinking is part of `output_tokens`."""
    parts = [
        raw.get(key)
        for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    ]
    counted = [part for part in parts if isinstance(part, int)]
    details = raw.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=sum(counted) if counted else None,
        completion_tokens=raw.get("output_tokens"),
        cached_tokens=raw.get("cache_read_input_tokens"),
        cache_write_tokens=raw.get("cache_creation_input_tokens"),
        reasoning_tokens=thinking if isinstance(thinking, int) else None,
    )


def _thinking_params(call: ProviderCall, stream: bool) -> dict[str, Any]:
    """`thinking` (and `output_config.effort`) for the call's reasoning effort. A caller's
    own `thinking` object wins; with no effort at all a stream still asks for summarized
    thinking (the model thinks by default, but would stream it empty)."""
    effort = call.reasoning_effort or call.extra.get("reasoning_effort")
    if isinstance(call.extra.get("thinking"), dict):
        params: dict[str, Any] = {"thinking": call.extra["thinking"]}
        if effort and effort != "none":
            params["output_config"] = {"effort": effort}
        return params
    if effort == "none":
        return next(
            (params for prefix, params in NO_THINKING.items() if call.model.startswith(prefix)),
            {"thinking": {"type": "disabled"}},
        )
    if effort:
        return {"thinking": ADAPTIVE_THINKING, "output_config": {"effort": effort}}
    return {"thinking": ADAPTIVE_THINKING} if stream else {}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    translated = {
        "name": function.get("name", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        translated["description"] = function["description"]
    return translated


def _tool_choice(choice: str | dict[str, Any] | None, thinking: bool) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        translated = TOOL_CHOICES.get(choice)
    else:
        name = (choice.get("function") or {}).get("name")
        translated = {"type": "tool", "name": name} if name else None
    # Anthropic refuses forced tool use while thinking: the model may still call one.
    if thinking and translated and translated["type"] in ("any", "tool"):
        return {"type": "auto"}
    return translated


def translate_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI chat messages as Anthropic's `system` and `messages`."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(message.get("content")))
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _text_of(message.get("content")),
            }
            previous = out[-1] if out else None
            # Consecutive results answer one assistant turn: one user message holds them.
            if previous and previous["role"] == "user" and _only_tool_results(previous):
                previous["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
        elif role == "assistant":
            content = _assistant_blocks(message)
            if content:
                out.append({"role": "assistant", "content": content})
        else:
            out.append({"role": "user", "content": _user_content(message.get("content"))})
    return "\n\n".join(part for part in system if part), out


def _only_tool_results(message: dict[str, Any]) -> bool:
    content = message["content"]
    return isinstance(content, list) and all(b.get("type") == "tool_result" for b in content)


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Thinking blocks first (only in a tool-use turn, where Anthropic requires them
    unchanged), then the text, then a `tool_use` block per call."""
    calls = message.get("tool_calls") or []
    blocks: list[dict[str, Any]] = []
    if calls:
        blocks.extend(b for b in message.get("thinking_blocks") or [] if isinstance(b, dict))
    text = _text_of(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in calls:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": _arguments(function.get("arguments")),
            }
        )
    return blocks


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _user_content(content: Any) -> str | list[dict[str, Any]]:
    if not isinstance(content, list):
        return content or ""
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            image = _image_block(part.get("image_url"))
            if image:
                blocks.append(image)
    return blocks


def _image_block(image_url: Any) -> dict[str, Any] | None:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        return None
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header.removeprefix("data:").split(";")[0]
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    if url.startswith("https:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return content or ""
