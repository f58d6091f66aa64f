"""Server-sent events from bytes as they arrive: the providers' streams.

Works on the raw bytes (no text decoding, no per-line str objects beyond the event
name): this runs once per token of every stream, the chat worker's hottest loop.
"""

from __future__ import annotations

Event = tuple[str | None, bytes]


class EndOfStream(Exception):
    """Raised by an event handler once the events it needs are in; it is handed no more
    of the body."""


class SseDecoder:
    """Fed the body's chunks, cut anywhere (inside a line, between a CR and its LF);
    hands back each whole event as `(event name or None, data)`."""

    def __init__(self) -> None:
        self._pending = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Event]:
        if self._pending:
            chunk = self._pending + chunk
        # A trailing CR may be the first half of a CRLF split across chunks.
        cut = len(chunk) - 1 if chunk.endswith(b"\r") else len(chunk)
        lines = chunk[:cut].splitlines(keepends=True)
        self._pending = chunk[cut:]
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._pending = lines.pop() + self._pending
        events: list[Event] = []
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line:
                if self._data:
                    events.append((self._event, b"\n".join(self._data)))
                self._event, self._data = None, []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].lstrip())
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode()
        return events

    def end(self) -> list[Event]:
        """The body ended: an event it did not close with a blank line, if any."""
        tail = self._pending.strip(b"\r\n")
        if tail.startswith(b"data:"):
            self._data.append(tail[5:].lstrip())
        self._pending = b""
        if not self._data:
            return []
        event, self._event, self._data = (self._event, b"\n".join(self._data)), None, []
        return [event]
