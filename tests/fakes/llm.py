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

Today's providers send more than text; these knobs ask for it:

- `reasoning=<n>`: think first, in n fragments `r{i}-<tag> ` (`expected_reasoning`):
  OpenAI-compatible `delta.reasoning_content` chunks (DeepSeek's, with `content: null`)
  before the content or tool calls, `message.reasoning_content` when not streaming, and
  `completion_tokens_details.reasoning_tokens`; Anthropic a `thinking` block
  (`thinking_delta`s, then a `signature_delta`; `anthropic_protocol.thinking_signature`)
- `cached=<n>`: n cached prompt tokens: OpenAI's `prompt_tokens_details.cached_tokens`,
  Anthropic's `cache_read_input_tokens` (in `message_start` and `message_delta`)
- `cache_hit=<n>`: DeepSeek's `prompt_cache_hit_tokens` (n) and `prompt_cache_miss_tokens`
- `cache_write=<n>`: Anthropic's `cache_creation_input_tokens`
- `redacted=1`: an Anthropic `redacted_thinking` block after the thinking
- `tool=` on Anthropic: `tool_use` blocks, their input in `input_json_delta` fragments,
  `stop_reason: tool_use`
- `require_reasoning=1`: every assistant message with `tool_calls` must carry its
  `reasoning_content`, or 400 as DeepSeek answers (`REASONING_MISSING`)
- `require_signature=1`: a turn of Anthropic tool results must send the assistant's
  thinking back first, signature unchanged, or 400 `invalid_request_error`

A turn whose last message is a tool result is answered with text, knobs read from the
last user message with text. Every request record holds what came back: OpenAI
`reasoning_sent_back` (each assistant tool-call message's `reasoning_content`, None when
missing) and Anthropic `thinking_sent_back` (the assistant thinking blocks).
`GET /v1/models` (and `/models`) lists `FakeLLM.models[<api key>]` (`DEFAULT_MODELS`
otherwise), in Anthropic's paged shape when the request carries `anthropic-version`.

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

from tests.fakes import anthropic_protocol
from tests.fakes.openai_protocol import (
    chunk_line,
    expected_reasoning_tokens,
    expected_tokens,
    knobs_of,
    last_user_text,
    text_of,
)
from tests.fakes.server import serve_in_thread

TITLE_MARKER = "title"
UPSTREAM_ERROR_MESSAGE = "fake upstream refuses: secret-internal-detail"
# DeepSeek's answer (400) to a thinking-mode tool-call turn sent back without its reasoning.
REASONING_MISSING = {
    "error": {
        "message": "The reasoning_content in the thinking mode must be passed back to the API.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_request_error",
    }
}
# What `GET /v1/models` lists for the keys `llm_env` gives the providers.
DEFAULT_MODELS: dict[str, list[str]] = {
    "sk-fake-deepseek": ["deepseek-flash", "deepseek-v4-pro"],
    "sk-fake-kimi": ["kimi-k2.6", "kimi-k3"],
    "sk-ant-fake": ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"],
}


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
    messages = body.get("messages") or []
    after_tools = bool(messages) and messages[-1].get("role") == "tool"
    calls = [] if after_tools else expected_tool_calls(last_user_text(body))
    reasoning = expected_reasoning_tokens(last_user_text(body))
    deltas = [{"content": None, "reasoning_content": piece} for piece in reasoning]
    deltas += _tool_call_deltas(calls) if calls else [{"content": token} for token in tokens]
    finish = knobs.get("finish") or ("tool_calls" if calls else "stop")
    prompt_tokens = int(knobs.get("prompt_tokens") or _prompt_tokens(body))
    usage: dict[str, Any] | None = None
    if not knobs.get("no_usage"):
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(deltas),
            "total_tokens": prompt_tokens + len(deltas),
        }
        if "cached" in knobs:
            usage["prompt_tokens_details"] = {"cached_tokens": int(knobs["cached"])}
        if reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": len(reasoning)}
        if "cache_hit" in knobs:
            usage["prompt_cache_hit_tokens"] = int(knobs["cache_hit"])
            usage["prompt_cache_miss_tokens"] = prompt_tokens - int(knobs["cache_hit"])
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    model = body.get("model", "fake")
    if not body.get("stream"):
        paced = [item async for item in _paced(knobs, deltas)]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(item.get("content") or "" for item in paced) or None,
        }
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
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


def _api_key(request: Request) -> str:
    """The key a request carries: Anthropic's `x-api-key` or a bearer token (which
    OpenAI clients and the `anthropic` SDK send)."""
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
    return request.headers.get("x-api-key") or bearer


class FakeLLM:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""
        # The ids `GET /v1/models` lists, per API key; tests set their own key's list.
        self.models: dict[str, list[str]] = {k: list(v) for k, v in DEFAULT_MODELS.items()}
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/chat/completions", self.openai, methods=["POST"]),
                Route("/v1/chat/completions", self.openai, methods=["POST"]),
                Route("/v1/messages", self.anthropic, methods=["POST"]),
                Route("/models", self.list_models, methods=["GET"]),
                Route("/v1/models", self.list_models, methods=["GET"]),
            ]
        )

    def requests_tagged(self, tag: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["knobs"].get("tag") == tag]

    def _append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(record)

    async def _record(self, request: Request, protocol: str) -> tuple[dict, str, dict, bool]:
        body = await request.json()
        messages = body.get("messages", [])
        last_user = (
            anthropic_protocol.knob_text(body) if protocol == "anthropic" else last_user_text(body)
        )
        system = body.get("system") or "".join(
            text_of(m["content"]) for m in messages if m.get("role") == "system"
        )
        is_title = TITLE_MARKER in str(system).lower() and "short title" in str(system).lower()
        knobs = knobs_of(last_user)
        record = {
            "protocol": protocol,
            "path": request.url.path,
            "headers": dict(request.headers),
            "api_key": _api_key(request),
            "body": body,
            "knobs": knobs,
            "is_title": is_title,
        }
        if protocol == "anthropic":
            record["thinking_sent_back"] = anthropic_protocol.thinking_sent_back(body)
        else:
            record["reasoning_sent_back"] = [
                m.get("reasoning_content")
                for m in messages
                if m.get("role") == "assistant" and m.get("tool_calls")
            ]
        self._append(record)
        return body, last_user, knobs, is_title

    # Model lists -------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        anthropic = "anthropic-version" in request.headers
        key = _api_key(request)
        self._append(
            {
                "protocol": "anthropic" if anthropic else "openai",
                "path": request.url.path,
                "headers": dict(request.headers),
                "api_key": key,
                "body": {},
                "knobs": {},
                "is_title": False,
            }
        )
        with self._lock:
            ids = list(self.models.get(key, []))
        if not anthropic:
            owner = key.removeprefix("sk-fake-") or "fake"
            data = [{"id": i, "object": "model", "created": 0, "owned_by": owner} for i in ids]
            return JSONResponse({"object": "list", "data": data})
        return JSONResponse(anthropic_protocol.models_page(ids, request.query_params))

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
        if knobs.get("require_reasoning") and any(
            not isinstance(m.get("reasoning_content"), str)
            for m in body.get("messages", [])
            if m.get("role") == "assistant" and m.get("tool_calls")
        ):
            return JSONResponse(REASONING_MISSING, status_code=400)
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
        refusal = knobs.get("require_signature") and anthropic_protocol.signature_error(body)
        if refusal:
            return JSONResponse(
                {"type": "error", "error": {"type": "invalid_request_error", "message": refusal}},
                status_code=400,
            )
        tokens = [title_reply(last_user)] if is_title else expected_tokens(last_user)
        tool_results = anthropic_protocol.is_tool_result_turn(body)
        if is_title:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": tokens[0]}]
        else:
            blocks = anthropic_protocol.expected_blocks(last_user, tool_results=tool_results)
        plan = list(anthropic_protocol.stream_plan(blocks, tokens))
        deltas = [payload for name, payload in plan if name == "content_block_delta"]
        usage = anthropic_protocol.usage_of(knobs, _prompt_tokens(body), len(deltas))
        stop_reason = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
        message_id = f"msg_{uuid.uuid4().hex[:12]}"
        model = body.get("model", "fake")
        if not body.get("stream"):
            async for _ in _paced(knobs, deltas):
                pass
            return JSONResponse(
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks,
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": usage,
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
                        "usage": {**usage, "output_tokens": 1},
                    }
                },
            )
            paced = aiter(_paced(knobs, deltas))
            for name, payload in plan:
                if name == "content_block_delta":
                    payload = await anext(paced)
                yield event(name, payload)
            yield event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {k: v for k, v in usage.items() if k != "input_tokens"},
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
