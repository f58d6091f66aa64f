"""The bench's client side: one streamed chat, timed, and its reply checked token by token."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import orjson

from bench.upstream import expected_tokens

REFUSAL_STATUS = frozenset({429, 503})


@dataclass
class StreamResult:
    status: int
    ttft: float | None
    total: float
    tokens: int
    # Tokens of the expected reply missing, out of place or extra; 0 for a correct reply.
    wrong_tokens: int
    error: str | None = None

    @property
    def refused(self) -> bool:
        return self.status in REFUSAL_STATUS

    @property
    def completed(self) -> bool:
        return self.status == 200 and self.error is None


def prompt(tag: str, tokens: int, delay: float) -> str:
    return f"Say something. [[tag={tag} tokens={tokens} delay={delay}]]"


def _check(content: str, received: str) -> tuple[int, int]:
    expected = [t.strip() for t in expected_tokens(content)]
    got = received.split()
    wrong = sum(a != b for a, b in zip(expected, got, strict=False)) + abs(len(expected) - len(got))
    return len(expected) - min(wrong, len(expected)), wrong


async def openai_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], content: str, model: str
) -> StreamResult:
    """One OpenAI-style streamed completion; TTFT is the first non-empty content delta."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": content}]}
    started = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    error: str | None = None
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return StreamResult(
                    response.status_code,
                    None,
                    time.perf_counter() - started,
                    0,
                    0,
                    response.text[:200],
                )
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = orjson.loads(data)
                if "error" in chunk:
                    error = str(chunk["error"])[:200]
                    break
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if ttft is None:
                            ttft = time.perf_counter() - started
                        parts.append(text)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
        status = 0
    else:
        status = 200
    correct, wrong = _check(content, "".join(parts))
    return StreamResult(status, ttft, time.perf_counter() - started, correct, wrong, error)


async def conversation_stream(
    client: httpx.AsyncClient,
    base_url: str,
    headers: dict[str, str],
    conversation_id: str,
    content: str,
) -> StreamResult:
    """One message on our conversation SSE route; TTFT is the first `delta` event."""
    url = f"{base_url}/v1/conversations/{conversation_id}/chat/stream"
    started = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    error: str | None = None
    async with client.stream("POST", url, json={"content": content}, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            return StreamResult(
                response.status_code, None, time.perf_counter() - started, 0, 0, response.text[:200]
            )
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
                if event == "delta":
                    if ttft is None:
                        ttft = time.perf_counter() - started
                    parts.append(data["content"])
                elif event in ("error", "cancelled"):
                    error = str(data)[:200]
                if event in ("done", "error", "cancelled"):
                    break
    correct, wrong = _check(content, "".join(parts))
    return StreamResult(200, ttft, time.perf_counter() - started, correct, wrong, error)
