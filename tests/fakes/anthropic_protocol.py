"""What the fake Anthropic Messages upstream answers, as pure functions of the request:
the content blocks a prompt's knobs ask for, the event stream that carries them, and the
rule that a tool-result turn sends the assistant's thinking back with its signature.

Shapes follow Anthropic's Messages API (streaming, extended thinking, tool use, prompt
caching) as the official `anthropic` SDK parses them; tests/e2e/test_fakes_with_sdks.py
holds the fake to that SDK.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from tests.fakes.openai_protocol import (
    expected_reasoning_tokens,
    expected_tokens,
    knobs_of,
    text_of,
)


def thinking_signature(thinking: str) -> str:
    """The opaque signature the fake gives a thinking text (and checks when it comes back)."""
    digest = hashlib.sha256(b"fake-thinking:" + thinking.encode()).digest()
    return base64.b64encode(digest * 2).decode()


def redacted_data(content: str) -> str:
    tag = knobs_of(content).get("tag", "x")
    return base64.b64encode(f"redacted thinking of {tag}".encode()).decode()


def is_tool_result_turn(body: dict[str, Any]) -> bool:
    """Whether the request ends with a user message of only `tool_result` blocks."""
    messages = body.get("messages") or []
    return bool(messages) and _is_tool_results(messages[-1])


def _is_tool_results(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return (
        message.get("role") == "user"
        and isinstance(content, list)
        and bool(content)
        and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )


def knob_text(body: dict[str, Any]) -> str:
    """The text of the last user message that is not only tool results: where the knobs are."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user" and not _is_tool_results(message):
            return text_of(message.get("content") or "")
    return ""


def expected_blocks(content: str, *, tool_results: bool = False) -> list[dict[str, Any]]:
    """The `content` of the answer to a prompt: a `thinking` block (`reasoning=`), a
    `redacted_thinking` block (`redacted=1`), then `tool_use` blocks (`tool=`) or text.
    A turn answering tool results is text only, as without interleaved thinking."""
    knobs = knobs_of(content)
    tag = knobs.get("tag", "x")
    text = {"type": "text", "text": "".join(expected_tokens(content))}
    if tool_results:
        return [text]
    blocks: list[dict[str, Any]] = []
    reasoning = "".join(expected_reasoning_tokens(content))
    if reasoning:
        blocks.append(
            {"type": "thinking", "thinking": reasoning, "signature": thinking_signature(reasoning)}
        )
    if knobs.get("redacted"):
        blocks.append({"type": "redacted_thinking", "data": redacted_data(content)})
    if "tool" in knobs:
        blocks.extend(
            {
                "type": "tool_use",
                "id": f"toolu_{index}_{tag}",
                "name": name,
                "input": {"city": f"city-{tag}", "call": index},
            }
            for index, name in enumerate(knobs["tool"].split(","))
        )
    else:
        blocks.append(text)
    return blocks


def block_deltas(block: dict[str, Any], tokens: list[str]) -> list[dict[str, Any]]:
    """The `content_block_delta` payloads that build `block` (its `delta` objects)."""
    kind = block["type"]
    if kind == "text":
        return [{"type": "text_delta", "text": token} for token in tokens]
    if kind == "thinking":
        pieces = [p for p in block["thinking"].split(" ") if p]
        return [
            *({"type": "thinking_delta", "thinking": piece + " "} for piece in pieces),
            {"type": "signature_delta", "signature": block["signature"]},
        ]
    if kind == "tool_use":
        arguments = json.dumps(block["input"])
        return [
            {"type": "input_json_delta", "partial_json": arguments[start : start + 5]}
            for start in range(0, len(arguments), 5)
        ]
    return []  # redacted_thinking arrives whole in its content_block_start


def block_start(block: dict[str, Any]) -> dict[str, Any]:
    """The `content_block` of a `content_block_start`: the block before its deltas."""
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": ""}
    if kind == "thinking":
        return {"type": "thinking", "thinking": ""}
    if kind == "tool_use":
        return {**block, "input": {}}
    return block


def stream_plan(blocks: list[dict[str, Any]], tokens: list[str]) -> Iterator[tuple[str, dict]]:
    """`(event name, payload)` pairs between `message_start` and `message_delta`; a
    `content_block_delta` is the paced part (the fake's `delay`, `fail_after` ... knobs)."""
    for index, block in enumerate(blocks):
        yield "content_block_start", {"index": index, "content_block": block_start(block)}
        if index == 0:
            yield "ping", {}
        for delta in block_deltas(block, tokens):
            yield "content_block_delta", {"index": index, "delta": delta}
        yield "content_block_stop", {"index": index}


def usage_of(knobs: dict[str, str], input_tokens: int, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if "cached" in knobs:
        usage["cache_read_input_tokens"] = int(knobs["cached"])
    if "cache_write" in knobs:
        usage["cache_creation_input_tokens"] = int(knobs["cache_write"])
    return usage


def signature_error(body: dict[str, Any]) -> str | None:
    """Why Anthropic would refuse this tool-result turn, or None: with thinking on, the
    assistant message with the `tool_use` blocks must start with its thinking block(s),
    each `thinking` with the signature it was issued with, unchanged."""
    messages = body.get("messages") or []
    if not is_tool_result_turn(body) or len(messages) < 2:
        return None
    index = len(messages) - 2
    content = messages[index].get("content")
    blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
    first = blocks[0].get("type") if blocks else "nothing"
    if first not in ("thinking", "redacted_thinking"):
        return (
            f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, "
            f"but found `{first}`. When `thinking` is enabled, a final `assistant` message "
            "must start with a thinking block (preceeding the lastmost set of `tool_use` and "
            "`tool_result` blocks). To avoid this requirement, disable `thinking`."
        )
    for position, block in enumerate(blocks):
        where = f"messages.{index}.content.{position}"
        if block.get("type") == "thinking":
            if not block.get("signature"):
                return f"{where}.thinking.signature: Field required"
            if block["signature"] != thinking_signature(block.get("thinking", "")):
                return f"{where}: Invalid `signature` in `thinking` block"
        if block.get("type") == "redacted_thinking" and not block.get("data"):
            return f"{where}.redacted_thinking.data: Field required"
    return None


def thinking_sent_back(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every `thinking`/`redacted_thinking` block of the request's assistant messages."""
    found = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if message.get("role") == "assistant" and isinstance(content, list):
            found.extend(
                b
                for b in content
                if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")
            )
    return found


def models_page(ids: list[str], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of Anthropic's `GET /v1/models` (`limit`, `after_id`, `before_id`)."""
    limit = int(query.get("limit") or 20)
    start, end = 0, len(ids)
    if query.get("after_id") in ids:
        start = ids.index(query["after_id"]) + 1
    if query.get("before_id") in ids:
        end = ids.index(query["before_id"])
        start = max(start, end - limit)
    page = ids[start : min(end, start + limit)]
    more = start + len(page) < end if not query.get("before_id") else start > 0
    return {
        "data": [
            {
                "type": "model",
                "id": model,
                "display_name": model.replace("-", " ").title(),
                "created_at": f"2026-01-{len(ids) - ids.index(model):02d}T00:00:00Z",
            }
            for model in page
        ],
        "has_more": more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
