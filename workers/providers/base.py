"""What every provider adapter shares: the call description, usage, errors, the
request (SSRF-pinned for user endpoints) and the sync client of the calls that do
not stream; streams go through workers/providers/stream_client.py.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import httpx
import orjson

from core.config import settings
from core.ssrf import pin_url
from workers.providers.tool_calls import ToolCallDelta

# Between-chunk read timeout: a stalled upstream fails the generation instead of hanging it.
TIMEOUT = httpx.Timeout(
    connect=10.0, read=settings.provider_read_timeout_seconds, write=10.0, pool=10.0
)
RETRY_ATTEMPTS = 3
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True)
class ProviderCall:
    """One request to a provider; `messages` may start with a system message."""

    base_url: str
    api_key: str
    model: str
    # OpenAI chat format. An assistant message may also carry `reasoning_content` (its
    # thinking text) and `thinking_blocks` (Anthropic's signed blocks): each adapter sends
    # them back only where its provider requires it (a tool-call turn) and drops them
    # elsewhere.
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    # none | low | medium | high; None leaves the model's own default. Each adapter maps
    # it to its provider's control.
    reasoning_effort: str | None = None
    # A user's own endpoint: connect to the checked address, never echo its errors.
    user_endpoint: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Usage:
    """Tokens as the provider reported them; None where it reported nothing."""

    # Every input token, cached ones included (Anthropic: input + cache read + cache write).
    prompt_tokens: int | None = None
    # Every output token, reasoning included.
    completion_tokens: int | None = None
    # Input read from the provider's cache (OpenAI `cached_tokens`, DeepSeek
    # `prompt_cache_hit_tokens`, Anthropic `cache_read_input_tokens`).
    cached_tokens: int | None = None
    # Input written to the cache (Anthropic `cache_creation_input_tokens`).
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True)
class Finish:
    """Why the reply ended, in OpenAI's words: `stop`, `length`, `tool_calls`, ..."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's thinking text (`reasoning_content` deltas; Anthropic
    `thinking_delta`s). It comes before the reply's text."""

    text: str


@dataclass(frozen=True)
class ThinkingBlock:
    """A whole Anthropic thinking block once it ended, as a later tool-use turn must send
    it back unchanged: `{"type": "thinking", "thinking", "signature"}` or
    `{"type": "redacted_thinking", "data"}`. Its text also came as Reasoning pieces."""

    block: dict[str, Any]


# What a provider's stream yields, in order: reasoning (pieces, and whole Anthropic blocks),
# text, tool-call fragments, the end reason, then usage.
StreamItem = str | Reasoning | ThinkingBlock | ToolCallDelta | Finish | Usage


class ProviderError(Exception):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


# Takes a stream's items one by one, synchronously, as the provider's bytes arrive.
Emit = Callable[[StreamItem], None]


class Provider(Protocol):
    async def stream(self, call: ProviderCall, emit: Emit) -> None:
        """Emit text deltas and tool-call fragments in order, a `Finish` when the provider
        names one, then one `Usage` (fields None when the provider gave none). Runs on
        the chat worker's event loop (workers/event_loop.py); what `emit` raises ends
        the stream and passes through."""
        ...

    def complete(self, call: ProviderCall) -> tuple[str, Usage]: ...


@dataclass(frozen=True)
class HttpRequest:
    """A provider request, sent by the sync client (a non-streaming call) or by the
    chat worker's streaming client (workers/providers/sse_transport.py)."""

    url: str
    headers: dict[str, str]
    body: bytes
    # TLS name of a pinned user endpoint, whose URL names the checked address instead.
    server_hostname: str | None = None


def build_request(
    call: ProviderCall, path: str, headers: dict[str, str], body: dict
) -> HttpRequest:
    url = call.base_url.rstrip("/") + path
    headers = {**headers, "Content-Type": "application/json"}
    server_hostname = None
    if call.user_endpoint:
        # Checked again at call time, not only when the config was saved (DNS may change).
        pinned = pin_url(url)
        url = pinned.url
        headers["Host"] = pinned.host_header
        server_hostname = pinned.sni_hostname
    return HttpRequest(url, headers, orjson.dumps(body), server_hostname)


def status_error(status: int, body: bytes, call: ProviderCall, provider: str) -> ProviderError:
    """A provider's answer with an error status, as a ProviderError."""
    retryable = status in RETRYABLE_STATUS
    if call.user_endpoint:
        # Echoing an arbitrary endpoint's body would turn the service into a port scanner.
        return ProviderError(f"The model endpoint answered HTTP {status}.", retryable=retryable)
    detail = _error_message(body)
    return ProviderError(f"{provider} answered HTTP {status}: {detail}", retryable=retryable)


def _error_message(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode(errors="replace")
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:500]
    return str(parsed)[:300]


def transport_error(kind: str, call: ProviderCall, provider: str) -> ProviderError:
    """`kind`: timeout, connect or broken (the response cut off)."""
    name = "the model endpoint" if call.user_endpoint else provider
    message = {
        "timeout": f"{name} timed out.",
        "connect": f"{name} is unreachable.",
    }.get(kind, f"{name} broke off the response.")
    return ProviderError(message, retryable=True)


@cache
def http_client() -> httpx.Client:
    """One pool per worker process for the calls that do not stream (titles); redirects
    are never followed."""
    return httpx.Client(
        timeout=TIMEOUT,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        trust_env=False,
    )


def fetch_json(request: HttpRequest, call: ProviderCall, provider: str) -> dict:
    """Send a non-streaming request and return its JSON body, errors mapped like streams."""
    extensions = {"sni_hostname": request.server_hostname} if request.server_hostname else {}
    try:
        response = http_client().post(
            request.url, content=request.body, headers=request.headers, extensions=extensions
        )
    except httpx.TimeoutException as exc:
        raise transport_error("timeout", call, provider) from exc
    except httpx.ConnectError as exc:
        raise transport_error("connect", call, provider) from exc
    except httpx.HTTPError as exc:
        raise transport_error("broken", call, provider) from exc
    if response.status_code >= 300:
        raise status_error(response.status_code, response.content, call, provider)
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProviderError(f"{provider} answered malformed JSON.") from exc


def chunk_json(data: bytes) -> dict:
    """One stream chunk's JSON object."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProviderError("The provider sent a malformed stream chunk.") from exc
    if not isinstance(chunk, dict):
        raise ProviderError("The provider sent a malformed stream chunk.")
    return chunk


async def stream_with_retry(provider: Provider, call: ProviderCall, emit: Emit) -> None:
    """Retry transient failures with backoff, but only before the first token (of text,
    reasoning or a tool call): after it, a retry would repeat what the client already has."""
    started = False

    def forward(item: StreamItem) -> None:
        nonlocal started
        if not started and isinstance(item, str | Reasoning | ThinkingBlock | ToolCallDelta):
            started = True
        emit(item)

    for attempt in range(RETRY_ATTEMPTS):
        try:
            await provider.stream(call, forward)
            return
        except ProviderError as exc:
            if started or not exc.retryable or attempt == RETRY_ATTEMPTS - 1:
                raise
        await asyncio.sleep(0.5 * 2**attempt + random.uniform(0, 0.25))
