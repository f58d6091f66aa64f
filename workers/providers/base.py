"""What every provider adapter shares: the call description, usage, errors, and
one HTTP client with timeouts, no redirects and SSRF pinning for user endpoints.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
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


class Provider(Protocol):
    def stream(self, call: ProviderCall) -> Iterator[StreamItem]:
        """Text deltas and tool-call fragments in order, a `Finish` when the provider
        names one, then one `Usage` (fields None when the provider gave none)."""
        ...

    def complete(self, call: ProviderCall) -> tuple[str, Usage]: ...


@cache
def http_client() -> httpx.Client:
    """One pool per worker process, shared by its threads; redirects are never followed."""
    return httpx.Client(
        timeout=TIMEOUT,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        trust_env=False,
    )


def build_request(
    call: ProviderCall, path: str, headers: dict[str, str], body: dict
) -> httpx.Request:
    url = call.base_url.rstrip("/") + path
    extensions: dict[str, Any] = {}
    if call.user_endpoint:
        # Checked again at call time, not only when the config was saved (DNS may change).
        pinned = pin_url(url)
        url = pinned.url
        headers = {**headers, "Host": pinned.host_header}
        extensions["sni_hostname"] = pinned.sni_hostname
    return http_client().build_request(
        "POST", url, headers=headers, json=body, extensions=extensions
    )


def raise_for_status(response: httpx.Response, call: ProviderCall, provider: str) -> None:
    if response.status_code < 300:
        return
    retryable = response.status_code in RETRYABLE_STATUS
    if call.user_endpoint:
        # Echoing an arbitrary endpoint's body would turn the service into a port scanner.
        raise ProviderError(
            f"The model endpoint answered HTTP {response.status_code}.", retryable=retryable
        )
    response.read()
    detail = _error_message(response)
    raise ProviderError(
        f"{provider} answered HTTP {response.status_code}: {detail}", retryable=retryable
    )


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:500]
    return str(body)[:300]


def transport_error(exc: httpx.HTTPError, call: ProviderCall, provider: str) -> ProviderError:
    name = "the model endpoint" if call.user_endpoint else provider
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(f"{name} timed out.", retryable=True)
    if isinstance(exc, httpx.ConnectError):
        return ProviderError(f"{name} is unreachable.", retryable=True)
    return ProviderError(f"{name} broke off the response.", retryable=True)


def fetch_json(request: httpx.Request, call: ProviderCall, provider: str) -> dict:
    """Send a non-streaming request and return its JSON body, errors mapped like streams."""
    try:
        response = http_client().send(request)
        raise_for_status(response, call, provider)
        return response.json()
    except httpx.HTTPError as exc:
        raise transport_error(exc, call, provider) from exc
    except json.JSONDecodeError as exc:
        raise ProviderError(f"{provider} answered malformed JSON.") from exc


def sse_lines(response: httpx.Response) -> Iterator[tuple[str | None, bytes]]:
    """(event, data) pairs of a server-sent-events body. Works on the raw bytes
    (no text decoding, no per-line str objects beyond the event name): this runs
    once per token of every stream, so it is the worker's hottest loop."""
    event: str | None = None
    data: list[bytes] = []
    pending = b""
    for chunk in response.iter_bytes():
        pending += chunk
        # A trailing CR may be the first half of a CRLF split across chunks.
        cut = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        lines = pending[:cut].splitlines(keepends=True)
        pending = pending[cut:]
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            pending = lines.pop() + pending
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = None, []
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip())
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
    if pending.strip(b"\r\n").startswith(b"data:"):
        data.append(pending.strip(b"\r\n")[5:].lstrip())
    if data:
        yield event, b"\n".join(data)


def chunk_json(data: bytes) -> dict:
    """One stream chunk's JSON object."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProviderError("The provider sent a malformed stream chunk.") from exc
    if not isinstance(chunk, dict):
        raise ProviderError("The provider sent a malformed stream chunk.")
    return chunk


def stream_with_retry(provider: Provider, call: ProviderCall) -> Iterator[StreamItem]:
    """Retry transient failures with backoff, but only before the first token (of text,
    reasoning or a tool call): after it, a retry would repeat what the client already has."""
    for attempt in range(RETRY_ATTEMPTS):
        started = False
        try:
            for item in provider.stream(call):
                started = started or isinstance(
                    item, str | Reasoning | ThinkingBlock | ToolCallDelta
                )
                yield item
            return
        except ProviderError as exc:
            if started or not exc.retryable or attempt == RETRY_ATTEMPTS - 1:
                raise
        time.sleep(0.5 * 2**attempt + random.uniform(0, 0.25))
