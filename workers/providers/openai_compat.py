"""OpenAI-compatible chat completions: DeepSeek, Kimi, users' own endpoints, plug-in-api."""

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
from workers.providers.tool_calls import ToolCallDelta


class OpenAICompatible:
    def __init__(self, name: str) -> None:
        self.name = name

    def _request(self, call: ProviderCall, stream: bool) -> httpx.Request:
        body: dict = {
            "model": call.model,
            "messages": call.messages,
            "stream": stream,
            **call.extra,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if call.temperature is not None:
            body["temperature"] = call.temperature
        if call.max_tokens is not None:
            body["max_tokens"] = call.max_tokens
        headers = {"Authorization": f"Bearer {call.api_key}", "Accept": "text/event-stream"}
        return build_request(call, "/chat/completions", headers, body)

    def stream(self, call: ProviderCall) -> Iterator[StreamItem]:
        usage = Usage()
        try:
            response = http_client().send(self._request(call, True), stream=True)
            try:
                raise_for_status(response, call, self.name)
                for _, data in sse_lines(response):
                    if data == b"[DONE]":
                        break
                    chunk = chunk_json(data)
                    if "error" in chunk:
                        raise ProviderError(self._chunk_error(chunk, call))
                    if chunk.get("usage"):
                        usage = Usage(
                            chunk["usage"].get("prompt_tokens"),
                            chunk["usage"].get("completion_tokens"),
                        )
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            yield delta["content"]
                        for raw in delta.get("tool_calls") or []:
                            yield ToolCallDelta.from_openai(raw)
                        if choice.get("finish_reason"):
                            yield Finish(choice["finish_reason"])
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise transport_error(exc, call, self.name) from exc
        yield usage

    def complete(self, call: ProviderCall) -> tuple[str, Usage]:
        body = fetch_json(self._request(call, False), call, self.name)
        choices = body.get("choices") or [{}]
        text = (choices[0].get("message") or {}).get("content") or ""
        usage = body.get("usage") or {}
        return text, Usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))

    def _chunk_error(self, chunk: dict, call: ProviderCall) -> str:
        if call.user_endpoint:
            return "The model endpoint reported an error mid-stream."
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        return f"{self.name}: {message}"
