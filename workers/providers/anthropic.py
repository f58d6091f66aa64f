"""Anthropic Messages API: system prompt apart, typed stream events, usage in two parts."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from workers.providers.base import (
    Finish,
    ProviderCall,
    ProviderError,
    StreamItem,
    Usage,
    build_request,
    chunk_json,
    fetch_json,
    http_client,
    raise_for_status,
    sse_lines,
    transport_error,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# Anthropic's stop reasons in OpenAI's words; the rest (end_turn, stop_sequence) are `stop`.
FINISH_REASONS = {"max_tokens": "length", "tool_use": "tool_calls"}


class Anthropic:
    name = "anthropic"

    def _request(self, call: ProviderCall, stream: bool) -> httpx.Request:
        system = "\n\n".join(m["content"] for m in call.messages if m["role"] == "system")
        messages = [m for m in call.messages if m["role"] != "system"]
        body: dict = {
            "model": call.model,
            "messages": messages,
            "max_tokens": call.max_tokens or DEFAULT_MAX_TOKENS,
            "stream": stream,
        }
        if system:
            body["system"] = system
        if call.temperature is not None:
            body["temperature"] = call.temperature
        headers = {"x-api-key": call.api_key, "anthropic-version": API_VERSION}
        return build_request(call, "/v1/messages", headers, body)

    def stream(self, call: ProviderCall) -> Iterator[StreamItem]:
        usage = Usage()
        try:
            response = http_client().send(self._request(call, True), stream=True)
            try:
                raise_for_status(response, call, self.name)
                for event, data in sse_lines(response):
                    payload = chunk_json(data)
                    kind = payload.get("type", event)
                    if kind == "message_start":
                        start_usage = (payload.get("message") or {}).get("usage") or {}
                        usage.prompt_tokens = start_usage.get("input_tokens")
                    elif kind == "content_block_delta":
                        delta = payload.get("delta") or {}
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            yield delta["text"]
                    elif kind == "message_delta":
                        usage.completion_tokens = (payload.get("usage") or {}).get("output_tokens")
                        stop_reason = (payload.get("delta") or {}).get("stop_reason")
                        if stop_reason:
                            yield Finish(FINISH_REASONS.get(stop_reason, "stop"))
                    elif kind == "error":
                        message = (payload.get("error") or {}).get("message", "stream error")
                        raise ProviderError(f"anthropic: {message}")
                    elif kind == "message_stop":
                        break
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise transport_error(exc, call, self.name) from exc
        yield usage

    def complete(self, call: ProviderCall) -> tuple[str, Usage]:
        body = fetch_json(self._request(call, False), call, self.name)
        text = "".join(
            block.get("text", "")
            for block in body.get("content") or []
            if block.get("type") == "text"
        )
        usage = body.get("usage") or {}
        return text, Usage(usage.get("input_tokens"), usage.get("output_tokens"))
