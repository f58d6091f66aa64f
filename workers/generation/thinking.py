"""Anthropic thinking blocks of stateless tool-use turns, kept for 24 hours under the
tool-call ids the service issued: a client that sends such a turn back without its
`thinking_blocks` (most OpenAI clients drop unknown fields) gets them restored, as
Anthropic refuses a tool-use turn whose thinking is missing (API.md, "OpenAI-compatible
particulars"). Keys are per user, so an id alone never reaches another's blocks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.client import Pipeline

BLOCKS_TTL_SECONDS = 24 * 3600


def blocks_key(user_id: uuid.UUID | str, tool_call_id: str) -> str:
    return f"thinking:{user_id}:{tool_call_id}"


@dataclass(frozen=True)
class KeptBlocks:
    """A finished turn's tool calls (`message.tool_calls` shape) and its thinking blocks."""

    tool_calls: list[dict[str, Any]]
    blocks: list[dict[str, Any]]

    def keep_in(self, pipe: Pipeline, user_id: uuid.UUID | str) -> None:
        """One SET with a TTL per tool-call id, in the caller's round trip."""
        value = orjson.dumps(self.blocks)
        for call in self.tool_calls:
            if call.get("id"):
                pipe.set(blocks_key(user_id, call["id"]), value, ex=BLOCKS_TTL_SECONDS)


def _first_tool_call_id(message: dict[str, Any]) -> str | None:
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict) and isinstance(call.get("id"), str) and call["id"]:
            return call["id"]
    return None


def restore_blocks(
    client: redis.Redis, user_id: uuid.UUID | str, messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`messages` with each assistant tool-call turn that came without `thinking_blocks`
    given those kept under its first tool-call id; one MGET, none when nothing wants it."""
    wanting = [
        (index, call_id)
        for index, message in enumerate(messages)
        if message.get("role") == "assistant"
        and not message.get("thinking_blocks")
        and (call_id := _first_tool_call_id(message)) is not None
    ]
    if not wanting:
        return messages
    found = client.mget([blocks_key(user_id, call_id) for _, call_id in wanting])
    restored = list(messages)
    for (index, _), value in zip(wanting, found, strict=True):
        if value is not None:
            restored[index] = {**messages[index], "thinking_blocks": orjson.loads(value)}
    return restored
