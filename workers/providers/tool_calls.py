"""Tool calls as OpenAI streams them: a call's id and name come in its first
fragment, its JSON arguments in pieces after it, all tagged with the call's index.

Fragments stay in OpenAI's `delta.tool_calls` shape end to end, so the API
relays them as they are; the worker merges neighbouring pieces of one call
(fewer stream entries) and assembles whole calls for the final answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolCallDelta:
    """One `delta.tool_calls` element: OpenAI's shape, keys absent when not sent."""

    fragment: dict[str, Any]

    @classmethod
    def from_openai(cls, raw: dict[str, Any]) -> ToolCallDelta:
        function = raw.get("function") or {}
        fragment: dict[str, Any] = {"index": int(raw.get("index") or 0)}
        if raw.get("id"):
            fragment["id"] = raw["id"]
        if raw.get("type"):
            fragment["type"] = raw["type"]
        fragment["function"] = {
            key: function[key] for key in ("name", "arguments") if function.get(key) is not None
        }
        return cls(fragment)


def merge_fragment(pending: list[dict[str, Any]], fragment: dict[str, Any]) -> None:
    """Append `fragment`, folding argument pieces into the previous fragment of the same
    call: a client accumulating by index ends up with the same call either way."""
    if pending and _continues(pending[-1], fragment):
        last = pending[-1]["function"]
        last["arguments"] = last.get("arguments", "") + fragment["function"].get("arguments", "")
    else:
        pending.append({**fragment, "function": dict(fragment["function"])})


def _continues(last: dict[str, Any], fragment: dict[str, Any]) -> bool:
    return (
        last["index"] == fragment["index"]
        and "id" not in fragment
        and "name" not in fragment["function"]
    )


def assemble(fragments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whole calls, ordered by index, in the shape of `message.tool_calls`."""
    calls: dict[int, dict[str, Any]] = {}
    for fragment in fragments:
        call = calls.setdefault(
            fragment["index"],
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        call["id"] = fragment.get("id", call["id"])
        call["type"] = fragment.get("type", call["type"])
        function = fragment["function"]
        call["function"]["name"] += function.get("name", "")
        call["function"]["arguments"] += function.get("arguments", "")
    return [calls[index] for index in sorted(calls)]
