"""What every fake OpenAI-compatible upstream shares: the knobs a prompt carries,
the reply they ask for, and the `chat.completion.chunk` SSE line.

The test fake (tests/fakes/llm.py) and the bench's lean upstream (bench/upstream.py)
both answer from here, so a reply the bench checks token by token is the same the
tests assert. No pytest or web framework imported: the bench loads it too.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

KNOBS = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def knobs_of(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for block in KNOBS.findall(text):
        for pair in block.split():
            name, _, value = pair.partition("=")
            found[name] = value
    return found


def expected_tokens(content: str) -> list[str]:
    knobs = knobs_of(content)
    tag = knobs.get("tag", "x")
    return [f"w{i}-{tag} " for i in range(int(knobs.get("tokens", "12")))]


def expected_reply(content: str) -> str:
    return "".join(expected_tokens(content))


def expected_reasoning_tokens(content: str) -> list[str]:
    """The thinking a `reasoning=<n>` knob asks for, streamed before the reply: `r{i}-<tag> `."""
    knobs = knobs_of(content)
    tag = knobs.get("tag", "x")
    return [f"r{i}-{tag} " for i in range(int(knobs.get("reasoning", "0")))]


def expected_reasoning(content: str) -> str:
    return "".join(expected_reasoning_tokens(content))


def text_of(content: Any) -> str:
    """A message's text, whether a string, a list of content parts, or none (an assistant
    turn with only tool calls sends `"content": null`)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return text_of(users[-1]["content"] or "") if users else ""


def chunk_line(
    completion_id: str, model: str, choices: list[dict[str, Any]], **extra: Any
) -> bytes:
    """One `data:` line of a streamed chat completion."""
    payload = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": choices,
        **extra,
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"
