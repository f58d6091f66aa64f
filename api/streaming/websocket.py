"""What the chat WebSocket sends: a relay's events and the socket's own errors as
JSON objects with a `type` (API.md, "Conversations and chat")."""

from __future__ import annotations

from typing import Any

from api.streaming.relay import StreamEvent


def event_payload(event: StreamEvent) -> dict[str, Any]:
    """A stream event as a frame: its name as `type`, its entry id, its data's fields."""
    if event.is_ping:
        return {"type": "ping"}
    return {"type": event.event, "id": event.id, **event.data}


def error_payload(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}
