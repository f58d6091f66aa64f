"""Server-sent events: the one framing of an event, the headers and the response
every SSE route answers with (our own events and OpenAI's chunk stream alike)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from fastapi.responses import StreamingResponse

if TYPE_CHECKING:
    # Only a type here: the relay's events frame themselves with `frame` below.
    from api.streaming.relay import StreamEvent

MEDIA_TYPE = "text/event-stream"
# No cache may hold the stream back, nor a proxy buffer it (nginx reads X-Accel-Buffering).
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# The `responses` of an SSE route's OpenAPI entry.
SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {MEDIA_TYPE: {}}, "description": "Server-sent events"}
}
# A comment line: a client sees no event, a proxy sees traffic.
PING_FRAME = b": ping\n\n"


def frame(data: bytes, event: str | None = None, event_id: str | None = None) -> bytes:
    """One event: its `id:` and `event:` lines when it has them, then `data:` and the
    blank line that ends it. `data` must hold no line break: compact JSON never does
    (a line break inside a string is escaped), so one event is always one `data:` line."""
    head = b""
    if event_id:
        head += b"id: " + event_id.encode() + b"\n"
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def sse_stream(
    body: AsyncIterator[bytes], headers: Mapping[str, str] | None = None
) -> StreamingResponse:
    """`body` (framed by `frame`) as an SSE response, with `headers` (rate limits) added."""
    return StreamingResponse(
        body, media_type=MEDIA_TYPE, headers={**SSE_HEADERS, **(headers or {})}
    )


async def _framed(events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    async for event in events:
        yield event.frame()


def sse_events(
    events: AsyncIterator[StreamEvent], headers: Mapping[str, str] | None = None
) -> StreamingResponse:
    """A relay's events (api/streaming/relay.py) as our own SSE stream."""
    return sse_stream(_framed(events), headers)
