"""OpenAI-compatible chat completions: DeepSeek, Kimi, users' own endpoints, plug-in-api."""

from __future__ import annotations

from typing import Any

from workers.providers.base import (
    Emit,
    Finish,
    HttpRequest,
    ProviderCall,
    ProviderError,
    Reasoning,
    Usage,
    build_request,
    chunk_json,
    fetch_json,
)
from workers.providers.sse import EndOfStream
from workers.providers.stream_client import sse_stream
from workers.providers.tool_calls import ToolCallDelta

# Providers whose Thinking Mode is switched by a `thinking: {"type"}` object and whose
# assistant tool-call turns must carry their `reasoning_content` back (else HTTP 400).
THINKING_MODE_PROVIDERS = frozenset({"deepseek", "kimi"})
# DeepSeek and Kimi take effort low / high / max (DeepSeek maps `medium` to high itself).
THINKING_MODE_EFFORT = {"low": "low", "medium": "high", "high": "high"}
# Ours to fill in, never the caller's: stored request keys a body must not carry twice.
OWN_PARAMS = ("reasoning_effort",)


class OpenAICompatible:
    def __init__(self, name: str, *, thinking_mode: bool = False) -> None:
        self.name = name
        # DeepSeek's and Kimi's dialect; other endpoints get OpenAI's own parameters.
        self.thinking_mode = thinking_mode

    def _request(self, call: ProviderCall, stream: bool) -> HttpRequest:
        extra = {k: v for k, v in call.extra.items() if k not in OWN_PARAMS}
        body: dict = {
            "model": call.model,
            "messages": [self._outgoing(message) for message in call.messages],
            "stream": stream,
            **extra,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if call.temperature is not None:
            body["temperature"] = call.temperature
        if call.max_tokens is not None:
            body["max_tokens"] = call.max_tokens
        body.update(self._reasoning_params(call))
        headers = {"Authorization": f"Bearer {call.api_key}", "Accept": "text/event-stream"}
        return build_request(call, "/chat/completions", headers, body)

    def _reasoning_params(self, call: ProviderCall) -> dict[str, Any]:
        effort = call.reasoning_effort or call.extra.get("reasoning_effort")
        if effort is None:
            return {}
        if not self.thinking_mode:
            return {"reasoning_effort": effort}
        # A caller's own `thinking` object (already in the body) wins over the mapping.
        params: dict[str, Any] = {}
        if effort == "none":
            if "thinking" not in call.extra:
                params["thinking"] = {"type": "disabled"}
            return params
        if "thinking" not in call.extra:
            params["thinking"] = {"type": "enabled"}
        params["reasoning_effort"] = THINKING_MODE_EFFORT.get(effort, effort)
        return params

    def _outgoing(self, message: dict[str, Any]) -> dict[str, Any]:
        """A history message as this provider takes it: reasoning only on assistant turns
        with tool calls (DeepSeek and Kimi refuse those without it, even empty; nobody
        needs it elsewhere), Anthropic's thinking blocks never."""
        if message.get("role") != "assistant":
            return message
        out = {
            k: v for k, v in message.items() if k not in ("reasoning_content", "thinking_blocks")
        }
        if message.get("tool_calls"):
            reasoning = message.get("reasoning_content")
            if isinstance(reasoning, str):
                out["reasoning_content"] = reasoning
            elif self.thinking_mode:
                out["reasoning_content"] = ""
        return out

    async def stream(self, call: ProviderCall, emit: Emit) -> None:
        usage = Usage()

        def on_event(_: str | None, data: bytes) -> None:
            nonlocal usage
            if data == b"[DONE]":
                raise EndOfStream
            chunk = chunk_json(data)
            if "error" in chunk:
                raise ProviderError(self._chunk_error(chunk, call))
            if isinstance(chunk.get("usage"), dict):
                usage = usage_of(chunk["usage"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                reasoning = reasoning_of(delta)
                if reasoning:
                    emit(Reasoning(reasoning))
                if delta.get("content"):
                    emit(delta["content"])
                for raw in delta.get("tool_calls") or ():
                    emit(ToolCallDelta.from_openai(raw))
                if choice.get("finish_reason"):
                    emit(Finish(choice["finish_reason"]))

        await sse_stream(self._request(call, True), call, self.name, on_event)
        emit(usage)

    def complete(self, call: ProviderCall) -> tuple[str, Usage]:
        """The reply's text only (its reasoning is left out: titles are made from this)."""
        body = fetch_json(self._request(call, False), call, self.name)
        choices = body.get("choices") or [{}]
        text = (choices[0].get("message") or {}).get("content") or ""
        usage = body.get("usage")
        return text, usage_of(usage) if isinstance(usage, dict) else Usage()

    def _chunk_error(self, chunk: dict, call: ProviderCall) -> str:
        if call.user_endpoint:
            return "The model endpoint reported an error mid-stream."
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        return f"{self.name}: {message}"


def reasoning_of(delta: dict[str, Any]) -> str | None:
    """A delta's thinking text: `reasoning_content` (DeepSeek, Kimi, vLLM), or the
    `reasoning` string some gateways (OpenRouter, newer vLLM) send instead."""
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def usage_of(raw: dict[str, Any]) -> Usage:
    """OpenAI's usage object with the details each provider adds: cached input as
    OpenAI's `prompt_tokens_details.cached_tokens`, DeepSeek's `prompt_cache_hit_tokens`
    or Moonshot's top-level `cached_tokens`; reasoning in `completion_tokens_details`."""
    prompt_details = raw.get("prompt_tokens_details")
    completion_details = raw.get("completion_tokens_details")
    cached = next(
        (
            value
            for value in (
                prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None,
                raw.get("prompt_cache_hit_tokens"),
                raw.get("cached_tokens"),
            )
            if isinstance(value, int)
        ),
        None,
    )
    reasoning = (
        completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    )
    return Usage(
        prompt_tokens=raw.get("prompt_tokens"),
        completion_tokens=raw.get("completion_tokens"),
        cached_tokens=cached,
        reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
    )
