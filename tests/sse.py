"""Test helpers: read server-sent events from an httpx streaming response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]


async def read_events(
    source: httpx.Response | AsyncIterator[str], stop_after: int | None = None
) -> list[Event]:
    """Events until the stream ends (or `stop_after` events); comment lines are skipped.

    Pass `response.aiter_lines()` to read one stream in several calls.
    """
    lines = source.aiter_lines() if isinstance(source, httpx.Response) else source
    events: list[Event] = []
    fields: dict[str, str] = {}
    async for line in lines:
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.lstrip()
            continue
        if fields:
            events.append(Event(fields.get("id"), fields["event"], json.loads(fields["data"])))
            fields = {}
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


def text_of(events: list[Event]) -> str:
    return "".join(e.data["content"] for e in events if e.event == "delta")


@asynccontextmanager
async def open_chat_stream(
    client: httpx.AsyncClient, user, conversation_id: str, content: str, **body: Any
) -> AsyncIterator[httpx.Response]:
    """A message posted to the conversation's SSE route: the open event stream."""
    async with client.stream(
        "POST",
        f"/v1/conversations/{conversation_id}/chat/stream",
        json={"content": content, **body},
        headers=user.headers,
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        yield response


async def stream_chat(
    client: httpx.AsyncClient, user, conversation_id: str, content: str, **body: Any
) -> list[Event]:
    async with open_chat_stream(client, user, conversation_id, content, **body) as response:
        return await read_events(response)


async def new_conversation(client: httpx.AsyncClient, user, **body: Any) -> str:
    answer = await client.post("/v1/conversations", json=body, headers=user.headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]
