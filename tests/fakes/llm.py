"""A fake LLM upstream speaking OpenAI chat completions and Anthropic messages.

Behaviour is driven by knobs in the last user message, written `[[name=value ...]]`,
so concurrent tests need no shared mutable state:

- `tag=<s>`: marks the reply tokens (`w0-<s> w1-<s> ...`) and the request record
- `tokens=<n>` (default 12), `delay=<s>` per token, `first_delay=<s>` before the first
- `fail_after=<n>`: drop the connection after n tokens
- `status=<code>`: answer that HTTP error with a provider-shaped body
- `hang=1`: accept and never send a token
- `hang_after=<n>`: send n tokens, then go silent with the connection open
- `no_usage=1`: report no usage (the caller must estimate)
- `title_status=<code>`: title requests (system prompt asking for a title) fail so
- `tool=<name>[,<name>...]`: answer with those tool calls instead of text, their
  JSON arguments streamed in small fragments after a first fragment with id and
  name, as OpenAI does (`expected_tool_calls`)
- `finish=<reason>`: the `finish_reason` to end with (default `stop`, or
  `tool_calls` with `tool=`)
- `nul=<i>`: token i carries a NUL character (`w3\x00-<s> `), which PostgreSQL
  cannot store in text (OpenAI protocol)
- `prompt_tokens=<n>`: report n prompt tokens in the usage (OpenAI protocol)

The reply is a pure function of the request (`openai_protocol.expected_reply`), and every
request is recorded (`FakeLLM.requests`) for assertions.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.openai_protocol import (
    chunk_line,
    expected_tokens,
    knobs_of,
    last_user_text,
    text_of,
)
from tests.fakes.server import serve_in_thread

TITLE_MARKER = "title"
UPSTREAM_ERROR_MESSAGE = "fake upstream refuses: secret-internal-detail"


def expected_tool_calls(content: str) -> list[dict[str, Any]]:
    """The whole calls a `tool=` knob asks for, in `message.tool_calls` shape."""
    knobs = knobs_of(content)
    if "tool" not in knobs:
        return []
    tag = knobs.get("tag", "x")
    return [
        {
            "id": f"call_{index}_{tag}",
            "type": "function",
            "function": {
                "name": name,
                "arguments": json.dumps({"city": f"city-{tag}", "call": index}),
            },
        }
        for index, name in enumerate(knobs["tool"].split(","))
    ]


def _tool_call_deltas(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`delta`s streaming `calls`: id and name first, then arguments five characters at a time."""
    deltas = []
    for index, call in enumerate(calls):
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        deltas.append({"tool_calls": [head]})
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), 5):
            piece = {"index": index, "function": {"arguments": arguments[start : start + 5]}}
            deltas.append({"tool_calls": [piece]})
    return deltas


def title_reply(content: str) -> str:
    tag = knobs_of(content).get("tag", "x")
    # Reasoning and quotes, as real models send them; the title job strips both.
    return f'<think>the user asks about {tag}</think>"Talk about {tag}."'


def _prompt_tokens(body: dict) -> int:
    text = str(body.get("system", "")) + "".join(
        text_of(m.get("content", "")) for m in body.get("messages", [])
    )
    return len(text) // 4 + 3


async def _paced(knobs: dict[str, str], items: list[Any]) -> AsyncIterator[Any]:
    """`items` in order, at the pace (and with the failures) the knobs ask for."""
    if knobs.get("hang"):
        await asyncio.sleep(3600)
    await asyncio.sleep(float(knobs.get("first_delay", "0")))
    fail_after = int(knobs["fail_after"]) if "fail_after" in knobs else None
    delay = float(knobs.get("delay", "0"))
    for index, item in enumerate(items):
        if fail_after is not None and index >= fail_after:
            raise ConnectionAbortedError("fake upstream drops the connection")
        if "hang_after" in knobs and index >= int(knobs["hang_after"]):
            await asyncio.sleep(3600)
        if index and delay:
            await asyncio.sleep(delay)
        yield item


async def openai_answer(body: dict[str, Any], knobs: dict[str, str], tokens: list[str]) -> Response:
    """OpenAI's answer to a chat completion request: `tokens` as the text (or the
    `tool=` knob's calls), one `chat.completion` or a chunk stream ending in usage."""
    calls = expected_tool_calls(last_user_text(body))
    deltas = _tool_call_deltas(calls) if calls else [{"content": token} for token in tokens]
    finish = knobs.get("finish") or ("tool_calls" if calls else "stop")
    prompt_tokens = int(knobs.get("prompt_tokens") or _prompt_tokens(body))
    usage = None
    if not knobs.get("no_usage"):
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(deltas),
            "total_tokens": prompt_tokens + len(deltas),
        }
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    model = body.get("model", "fake")
    if not body.get("stream"):
        paced = [item async for item in _paced(knobs, deltas)]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(item.get("content", "") for item in paced) or None,
        }
        if calls:
            message["tool_calls"] = calls
        answer: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        if usage:
            answer["usage"] = usage
        return JSONResponse(answer)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return chunk_line(completion_id, model, choices, **extra)

    def delta(content: dict, finish_reason: str | None = None) -> bytes:
        return chunk([{"index": 0, "delta": content, "finish_reason": finish_reason}])

    async def events() -> AsyncIterator[bytes]:
        yield delta({"role": "assistant", "content": None if calls else ""})
        async for item in _paced(knobs, deltas):
            yield delta(item)
        yield delta({}, finish)
        if include_usage and usage:
            yield chunk([], usage=usage)
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


class FakeLLM:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/chat/completions", self.openai, methods=["POST"]),
                Route("/v1/chat/completions", self.openai, methods=["POST"]),
                Route("/v1/messages", self.anthropic, methods=["POST"]),
            ]
        )

    def requests_tagged(self, tag: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["knobs"].get("tag") == tag]

    async def _record(self, request: Request, protocol: str) -> tuple[dict, str, dict, bool]:
        body = await request.json()
        messages = body.get("messages", [])
        last_user = last_user_text(body)
        system = body.get("system") or "".join(
            text_of(m["content"]) for m in messages if m.get("role") == "system"
        )
        is_title = TITLE_MARKER in str(system).lower() and "short title" in str(system).lower()
        knobs = knobs_of(last_user)
        with self._lock:
            self.requests.append(
                {
                    "protocol": protocol,
                    "path": request.url.path,
                    "headers": dict(request.headers),
                    "body": body,
                    "knobs": knobs,
                    "is_title": is_title,
                }
            )
        return body, last_user, knobs, is_title

    # OpenAI chat completions -------------------------------------------------

    async def openai(self, request: Request) -> Response:
        body, last_user, knobs, is_title = await self._record(request, "openai")
        status = knobs.get("title_status" if is_title else "status")
        if status:
            return JSONResponse(
                {
                    "error": {
                        "message": UPSTREAM_ERROR_MESSAGE,
                        "type": "server_error",
                        "code": None,
                    }
                },
                status_code=int(status),
            )
        tokens = [title_reply(last_user)] if is_title else expected_tokens(last_user)
        if "nul" in knobs and not is_title:
            index = int(knobs["nul"])
            tokens[index] = tokens[index].replace("-", "\x00-", 1)
        return await openai_answer(body, knobs, tokens)

    # Anthropic messages ------------------------------------------------------

    async def anthropic(self, request: Request) -> Response:
        body, last_user, knobs, is_title = await self._record(request, "anthropic")
        status = knobs.get("title_status" if is_title else "status")
        if status:
            return JSONResponse(
                {
                    "type": "error",
                    "error": {"type": "api_error", "message": UPSTREAM_ERROR_MESSAGE},
                },
                status_code=int(status),
            )
        tokens = [title_reply(last_user)] if is_title else expected_tokens(last_user)
        input_tokens = _prompt_tokens(body)
        message_id = f"msg_{uuid.uuid4().hex[:12]}"
        model = body.get("model", "fake")
        if not body.get("stream"):
            text = "".join([t async for t in _paced(knobs, tokens)])
            return JSONResponse(
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": len(tokens)},
                }
            )

        def event(name: str, payload: dict) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n"

        async def events() -> AsyncIterator[str]:
            yield event(
                "message_start",
                {
                    "message": {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                    }
                },
            )
            yield event(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
            yield event("ping", {})
            async for token in _paced(knobs, tokens):
                yield event(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": token}},
                )
            yield event("content_block_stop", {"index": 0})
            yield event(
                "message_delta",
                {
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(tokens)},
                },
            )
            yield event("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    with serve_in_thread(fake.app) as base_url:
        fake.base_url = base_url
        yield fake


@pytest.fixture(scope="session")
def llm_env(fake_llm: FakeLLM) -> dict[str, str]:
    """Every platform provider points at the fake, with a key so `local` is not used."""
    return {
        "DEEPSEEK_BASE_URL": fake_llm.base_url,
        "DEEPSEEK_API_KEY": "sk-fake-deepseek",
        "KIMI_BASE_URL": fake_llm.base_url + "/v1",
        "KIMI_API_KEY": "sk-fake-kimi",
        "ANTHROPIC_BASE_URL": fake_llm.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-fake",
    }
