"""The bench's client side: one streamed chat, timed, and its reply checked token by token."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson

from bench.http import Connection, Response
from tests.fakes.openai_protocol import expected_tokens

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
    # A refusal's Retry-After, in seconds: when the client may try again.
    retry_after: float | None = None

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


async def _refusal(response: Response, started: float) -> StreamResult:
    """A non-200 answer (a refusal, or an error), with the Retry-After it carries."""
    text = (await response.read()).decode(errors="replace")
    retry_after = response.headers.get("retry-after")
    return StreamResult(
        response.status,
        None,
        time.perf_counter() - started,
        0,
        0,
        text[:200],
        float(retry_after) if retry_after else None,
    )


async def openai_stream(
    connection: Connection, url: str, headers: dict[str, str], content: str, model: str
) -> StreamResult:
    """One OpenAI-style streamed completion; TTFT is the first non-empty delta, reasoning
    (`reasoning_content`) or reply text: a thinking model's first token is its thinking."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": content}]}
    started = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    error: str | None = None
    try:
        response = await connection.post(url, body, headers)
        if response.status != 200:
            return await _refusal(response, started)
        async for line in response.lines():
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
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if ttft is None and (text or delta.get("reasoning_content")):
                    ttft = time.perf_counter() - started
                if text:
                    parts.append(text)
        # The rest of the body, so the connection can carry the next request.
        await response.read()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        await connection.close()
        error = f"{type(exc).__name__}: {exc}"[:200]
        status = 0
    else:
        status = 200
    correct, wrong = _check(content, "".join(parts))
    return StreamResult(status, ttft, time.perf_counter() - started, correct, wrong, error)


async def conversation_stream(
    connection: Connection,
    base_url: str,
    headers: dict[str, str],
    conversation_id: str,
    content: str,
) -> StreamResult:
    """One message on our conversation SSE route; TTFT is the first `reasoning` or `delta`
    event."""
    url = f"{base_url}/v1/conversations/{conversation_id}/chat/stream"
    started = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    error: str | None = None
    response = await connection.post(url, {"content": content}, headers)
    if response.status != 200:
        return await _refusal(response, started)
    event = ""
    async for line in response.lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = orjson.loads(line[6:])
            if event in ("reasoning", "delta") and ttft is None:
                ttft = time.perf_counter() - started
            if event == "delta":
                parts.append(data["content"])
            elif event in ("error", "cancelled"):
                error = str(data)[:200]
            if event in ("done", "error", "cancelled"):
                break
    await response.read()
    correct, wrong = _check(content, "".join(parts))
    return StreamResult(200, ttft, time.perf_counter() - started, correct, wrong, error)
