"""The bench's client side: one streamed chat, timed, and its reply (its reasoning, then its
content) checked token by token against what the fake upstream sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from bench.http import Connection, Response
from tests.fakes.openai_protocol import expected_reasoning_tokens, expected_tokens

REFUSAL_STATUS = frozenset({429, 503})


@dataclass
class StreamResult:
    status: int
    ttft: float | None
    total: float
    # Tokens received as sent, reasoning and content together.
    tokens: int
    # Tokens of the expected reply (reasoning or content) missing, out of place or extra;
    # 0 for a correct reply. A reasoning sent after content counts too.
    wrong_tokens: int
    error: str | None = None
    # A refusal's Retry-After, in seconds: when the client may try again.
    retry_after: float | None = None
    # Of `tokens`, the reasoning's.
    reasoning_tokens: int = 0
    # Reasoning was sent but none arrived (a proxy that drops it): not in `wrong_tokens`,
    # reported on its own so a peer's gap is told from a relay's loss.
    reasoning_dropped: bool = False
    # `completion_tokens_details.reasoning_tokens` of the final usage chunk, when asked for.
    usage_reasoning_tokens: int | None = None

    @property
    def refused(self) -> bool:
        return self.status in REFUSAL_STATUS

    @property
    def completed(self) -> bool:
        return self.status == 200 and self.error is None


def prompt(tag: str, tokens: int, delay: float, reasoning: int = 0) -> str:
    thinking = f" reasoning={reasoning}" if reasoning else ""
    return f"Say something. [[tag={tag} tokens={tokens} delay={delay}{thinking}]]"


def _compare(expected_pieces: list[str], received: str) -> tuple[int, int]:
    """(correct, wrong) tokens of `received` against the pieces the upstream sent."""
    expected = [t.strip() for t in expected_pieces]
    got = received.split()
    wrong = sum(a != b for a, b in zip(expected, got, strict=False)) + abs(len(expected) - len(got))
    return len(expected) - min(wrong, len(expected)), wrong


@dataclass
class _Received:
    """What one stream delivered, in order: its reasoning and its content."""

    reasoning: list[str]
    content: list[str]
    # Told the tokens of each piece as it arrives (a sweep's tokens per second in its window).
    on_tokens: Callable[[int], None] | None = None
    # Reasoning pieces that came after the content had begun.
    late_reasoning: int = 0

    def add(self, reasoning: str | None, content: str | None) -> None:
        if self.on_tokens is not None:
            self.on_tokens(len((reasoning or "").split()) + len((content or "").split()))
        if reasoning:
            self.late_reasoning += bool(self.content)
            self.reasoning.append(reasoning)
        if content:
            self.content.append(content)

    def result(
        self, prompt_text: str, status: int, ttft: float | None, total: float, error: str | None
    ) -> StreamResult:
        correct, wrong = _compare(expected_tokens(prompt_text), "".join(self.content))
        expected_reasoning = expected_reasoning_tokens(prompt_text)
        dropped = bool(expected_reasoning) and not self.reasoning
        reasoning = 0
        if not dropped:
            reasoning, reasoning_wrong = _compare(expected_reasoning, "".join(self.reasoning))
            wrong += reasoning_wrong + self.late_reasoning
        return StreamResult(
            status,
            ttft,
            total,
            correct + reasoning,
            wrong,
            error,
            reasoning_tokens=reasoning,
            reasoning_dropped=dropped,
        )


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
    connection: Connection,
    url: str,
    headers: dict[str, str],
    content: str,
    model: str,
    include_usage: bool = False,
    on_tokens: Callable[[int], None] | None = None,
) -> StreamResult:
    """One OpenAI-style streamed completion; TTFT is the first non-empty delta, reasoning
    (`reasoning_content`) or reply text: a thinking model's first token is its thinking."""
    body: dict = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    started = time.perf_counter()
    ttft: float | None = None
    received = _Received([], [], on_tokens)
    usage_reasoning: int | None = None
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
                text, thought = delta.get("content"), delta.get("reasoning_content")
                if ttft is None and (text or thought):
                    ttft = time.perf_counter() - started
                received.add(thought, text)
            if usage := chunk.get("usage"):
                details = usage.get("completion_tokens_details") or {}
                usage_reasoning = details.get("reasoning_tokens")
        # The rest of the body, so the connection can carry the next request.
        await response.read()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        await connection.close()
        error = f"{type(exc).__name__}: {exc}"[:200]
        status = 0
    else:
        status = 200
    result = received.result(content, status, ttft, time.perf_counter() - started, error)
    result.usage_reasoning_tokens = usage_reasoning
    return result


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
    received = _Received([], [])
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
            if event == "reasoning":
                received.add(data["content"], None)
            elif event == "delta":
                received.add(None, data["content"])
            elif event in ("error", "cancelled"):
                error = str(data)[:200]
            if event in ("done", "error", "cancelled"):
                break
    await response.read()
    return received.result(content, 200, ttft, time.perf_counter() - started, error)
