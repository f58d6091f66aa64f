"""The API's HTTP protocol: uvicorn's httptools protocol plus a request-line and header timeout.

uvicorn only times out idle keep-alive connections; a client that opens a connection and
then trickles a request line or headers (slow-loris) holds it, and a worker's share of
file descriptors, for as long as it likes. This protocol gives the line and headers of
each request `header_timeout_seconds` to arrive, answers 408 and closes when they do not.
`cli.stack.api_command` selects it with `--http api.server:HeaderTimeoutProtocol`. The
body has its own limit in an ASGI middleware; once the headers are complete nothing here
runs again for that request, so long responses (SSE) are not affected. A WebSocket's
upgrade request is covered like any other; uvicorn then hands its WebSocket protocol the
complete request at once (nothing left to wait for from the client), and past the 101 its
pings (`--ws-ping-interval`/`--ws-ping-timeout`, 20 s each) drop a peer that went away.
"""

from __future__ import annotations

import asyncio

import orjson
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from core.config import settings

HEADER_TIMEOUTS = Counter(
    "switchboard_http_header_timeouts_total",
    "Connections closed because a request's line and headers did not arrive in time",
)

_BODY = orjson.dumps(
    {"detail": "The request headers did not arrive in time.", "code": "request_timeout"}
)
_HEADERS = b"".join(
    [
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(_BODY),
        b"connection: close\r\n",
        b"\r\n",
    ]
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """Each request's head has a deadline, set at its first byte and cleared at its last header.

    One timer per connection checks it, left to lapse rather than cancelled when headers
    complete and re-armed only when it fires: a keep-alive connection's requests then cost
    a clock read each, not a timer started and stopped each (a few microseconds in uvloop).
    """

    header_timeout = settings.header_timeout_seconds

    _header_deadline: float | None = None
    _header_timer: asyncio.TimerHandle | None = None

    # uvicorn's own override narrows the transport to asyncio.Transport, as this one does.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn starts no timer on a new connection: one that never sends a byte would
        # otherwise stay open forever.
        self._start_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # An idle keep-alive connection is waking up. Not left to on_message_begin: the
        # parser skips blank lines between requests without beginning one, and uvicorn has
        # already cancelled its keep-alive timer, so a client sending b"\r\n" now and then
        # would hold the connection with no timer at all.
        if self.timeout_keep_alive_task is not None and self._header_deadline is None:
            self._start_header_clock()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # Already running for a connection's first request: the time since it opened counts.
        if self._header_deadline is None:
            self._start_header_clock()

    def on_headers_complete(self) -> None:
        self._header_deadline = None
        super().on_headers_complete()

    def _start_header_clock(self) -> None:
        self._header_deadline = self.loop.time() + self.header_timeout
        if self._header_timer is None:
            self._header_timer = self.loop.call_at(self._header_deadline, self._check_header)

    def _check_header(self) -> None:
        self._header_timer = None
        deadline = self._header_deadline
        if deadline is None or self.transport.is_closing():
            return
        if deadline > self.loop.time():
            # A later request's head, started after this timer was armed.
            self._header_timer = self.loop.call_at(deadline, self._check_header)
            return
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            # A pipelined request began while an earlier one is still being answered: a
            # 408 cannot be written into that response, and reading may be paused behind
            # it, so the wait is ours, not the client's. Look again later.
            self._start_header_clock()
            return
        HEADER_TIMEOUTS.inc()
        content = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([_HEADERS, _BODY])
        self.transport.write(b"".join(content))
        self.transport.close()
