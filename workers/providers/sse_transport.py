"""A provider's streamed answer read by an HTTP/1.1 client in the transport's own callback.

With aiohttp (which this replaced), each chunk of a stream (one per token) woke its
StreamReader's future, rescheduled the read timeout's timer and resumed the coroutine
that read the body: a large share of the chat worker's CPU per token (21-25 us a
token against 12-14 here, measured with 100 paced streams). Here the protocol's `data_received`
decodes the response and hands each server-sent event to a callback on the spot; per
chunk there is no future, no task switch and no timer. The read timeout is one timer
per request that re-arms itself from the time of the last data.

Like the other clients (workers/providers/base.py): no redirects, no proxies, the
pinned address of a user endpoint. No content coding either: no Accept-Encoding is
sent. A connection whose answer ended cleanly waits in its event loop's idle pool.

A handler's EndOfStream returns the call at once, but the connection reads the rest of
the body (mostly the chunked terminator, in the same or the next segment) for a few
seconds before it joins the pool: a new connection to a provider costs TCP and TLS
handshakes, several round trips ahead of the next generation's first token.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from contextlib import suppress
from functools import cache
from typing import Literal, cast
from urllib.parse import urlsplit

from workers.event_loop import loop_local
from workers.providers.base import HttpRequest
from workers.providers.sse import EndOfStream, SseDecoder

# An error answer's body is read for its message, never more than this.
ERROR_BODY_BYTES = 64 * 1024
# Beyond these, what answers is not an HTTP server worth reading.
HEAD_BYTES = 64 * 1024
LINE_BYTES = 4096
# The longer a connection idles, the likelier the server closes it just as a request
# goes out on it.
IDLE_SECONDS = 30.0
# How long a connection, once its caller has all it needs, may take to end the body.
DRAIN_SECONDS = 2.0

OnEvent = Callable[[str | None, bytes], None]
# scheme, host, port, TLS server name
PoolKey = tuple[str, str, int, str | None]

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: .*)?", re.DOTALL)
# A chunk-size line, extensions and line end included: one match per chunk, the hot path.
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\n]*)?\r?\n")
# A header name or value that could end its line would smuggle in headers of its own.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE = re.compile(r"[\r\n\0]")

# Where the parser is in the answer.
_IDLE, _HEAD, _LENGTH, _UNTIL_CLOSE, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILER = range(8)


class HttpStatusError(Exception):
    """The answer's status was 300 or more; `body`: at most its first 64 KiB."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class TransportFailure(Exception):
    """`connect`: refused, unresolved, TLS refused or no connection in time; `timeout`:
    no byte for the read timeout; `broken`: closed before the body ended, or not HTTP."""

    def __init__(self, kind: Literal["connect", "timeout", "broken"]) -> None:
        super().__init__(kind)
        self.kind = kind


async def post_sse(
    request: HttpRequest,
    on_event: OnEvent,
    *,
    connect_timeout: float,
    read_timeout: float,
) -> None:
    """POST `request` and call `on_event(event name or None, data)` for each event of the
    answer, from the socket's callback. An exception of `on_event` comes out of here as
    it is, save EndOfStream: that one ends the call normally, and `on_event` is called
    no more (the connection still reads the rest of the body, after this returns)."""
    url = urlsplit(request.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"Not an http(s) URL: {request.url!r}")
    tls_name = (request.server_hostname or url.hostname) if url.scheme == "https" else None
    key = (url.scheme, url.hostname, url.port or (443 if tls_name else 80), tls_name)
    head = _request_head(request, url.path or "/", url.query, url.netloc.rpartition("@")[2])
    connection = _idle_connection(key)
    if connection is not None:
        try:
            await _exchange(connection, head + request.body, on_event, read_timeout)
            return
        except TransportFailure as exc:
            # The server closed the idle connection as the request went out: it never
            # answered, so the request is sent once more on a new connection.
            if exc.kind != "broken" or connection.answered:
                raise
    connection = await _connect(key, connect_timeout)
    await _exchange(connection, head + request.body, on_event, read_timeout)


@cache
def tls_context() -> ssl.SSLContext:
    """The process' TLS client context: the CA bundle is loaded once."""
    return ssl.create_default_context()


def _request_head(request: HttpRequest, path: str, query: str, authority: str) -> bytes:
    target = f"{path}?{query}" if query else path
    if any(c <= " " or c == "\x7f" for c in target):
        raise ValueError(f"Unsafe request target: {target!r}")
    lines = [f"POST {target} HTTP/1.1"]
    # A pinned user endpoint's URL names the checked address; its Host header the name.
    if not any(name.lower() == "host" for name in request.headers):
        lines.append(f"Host: {authority}")
    for name, value in request.headers.items():
        if not _TOKEN.fullmatch(name) or _UNSAFE.search(value):
            raise ValueError(f"Unsafe header: {name!r}")
        if name.lower() != "content-length":
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(request.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@loop_local
def _idle_pool() -> dict[PoolKey, list[_Connection]]:
    return {}


def _idle_connection(key: PoolKey) -> _Connection | None:
    """The most recently used idle connection to `key`, if one is still open."""
    idle = _idle_pool().get(key)
    while idle:
        connection = idle[-1]
        connection.unpark()
        if not connection.closing:
            return connection
    return None


async def _connect(key: PoolKey, connect_timeout: float) -> _Connection:
    scheme, host, port, tls_name = key
    loop = asyncio.get_running_loop()
    pool = _idle_pool()
    try:
        async with asyncio.timeout(connect_timeout):
            _, connection = await loop.create_connection(
                lambda: _Connection(loop, pool, key),
                host,
                port,
                ssl=tls_context() if scheme == "https" else None,
                server_hostname=tls_name,
            )
    # Refused, unresolved, TLS handshake or certificate refused, or TimeoutError: all OSError.
    except OSError as exc:
        raise TransportFailure("connect") from exc
    return connection


async def _exchange(
    connection: _Connection, message: bytes, on_event: OnEvent, timeout: float
) -> None:
    try:
        await connection.send(message, on_event, timeout)
    finally:
        connection.release()


def _ignore(event: str | None, data: bytes) -> None:
    """The events of a body read after its caller had all it needed."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its answer parsed as it arrives."""

    _on_event: OnEvent

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: dict[PoolKey, list[_Connection]],
        key: PoolKey,
    ) -> None:
        self._loop = loop
        self._pool = pool
        self._key = key
        self._transport: asyncio.Transport | None = None
        self._done: asyncio.Future[None] | None = None
        self._decoder = SseDecoder()
        self._state = _IDLE
        self._buffer = b""
        self._status = 0
        self._keep_alive = False
        self._left = 0
        self._error_body = bytearray()
        self._timeout = 0.0
        self._last_data = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        # From the handler's EndOfStream to the body's end: the caller is answered, the
        # body read on for the connection's sake.
        self._draining = False
        # Set while the drain runs on after its caller let go: the drain's end decides
        # whether the connection waits in the pool or closes.
        self._drain_deadline: asyncio.TimerHandle | None = None
        # Set while the connection waits in the pool.
        self._idle_timer: asyncio.TimerHandle | None = None
        self.answered = False
        self.reusable = False

    @property
    def closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def send(self, message: bytes, on_event: OnEvent, timeout: float) -> asyncio.Future[None]:
        assert self._transport is not None and self._done is None
        self._done = self._loop.create_future()
        self._on_event = on_event
        self._decoder = SseDecoder()
        self._state = _HEAD
        self._buffer = b""
        self._error_body = bytearray()
        self.answered = self.reusable = False
        self._timeout = timeout
        self._last_data = self._loop.time()
        self._watchdog = self._loop.call_later(timeout, self._watch)
        self._transport.write(message)
        return self._done

    def release(self) -> None:
        """Its caller is done with the answer, which may still be under way."""
        # Only an answer read to its end leaves the connection ready for the next one.
        if self.reusable:
            self.park()
        elif self._draining and self._keep_alive:
            self._drain_deadline = self._loop.call_later(DRAIN_SECONDS, self.close)
        else:
            self.close()

    def park(self) -> None:
        self._pool.setdefault(self._key, []).append(self)
        self._idle_timer = self._loop.call_later(IDLE_SECONDS, self.close)

    def unpark(self) -> None:
        if self._idle_timer is None:
            return
        self._idle_timer.cancel()
        self._idle_timer = None
        idle = self._pool[self._key]
        idle.remove(self)
        if not idle:
            del self._pool[self._key]

    def close(self) -> None:
        # A request still under way here has lost its waiter (cancelled) or answered it
        # already (draining): nothing to answer.
        self._stop()
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    def _stop(self) -> None:
        self._done = None
        self._state = _IDLE
        self._draining = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._drain_deadline is not None:
            self._drain_deadline.cancel()
            self._drain_deadline = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though uvloop's are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        if self._done is None:
            # Bytes no request asked for: what comes next on this connection is unknowable.
            self.close()
            return
        self.answered = True
        try:
            self._receive(data)
        # Passed on as it is: on_event's own failure, or the answer's.
        except Exception as exc:
            self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.unpark()
        if self._done is None:
            return
        # Without a length, the body is what came until the server closed cleanly; an
        # error answer is worth its status even cut off.
        body_read = (self._state == _UNTIL_CLOSE and exc is None) or (
            self._state != _HEAD and self._status >= 300
        )
        try:
            if not body_read:
                raise TransportFailure("broken")
            self._keep_alive = False
            self._end_body()
        except Exception as error:
            self._finish(error)

    def _watch(self) -> None:
        quiet = self._loop.time() - self._last_data
        if quiet >= self._timeout:
            self._finish(TransportFailure("timeout"))
        else:
            self._watchdog = self._loop.call_later(self._timeout - quiet, self._watch)

    def _finish(self, exc: Exception | None) -> None:
        done = self._done
        if done is None:
            return
        # Only an answer read to its end, where no handler failed, leaves the connection
        # ready for the next request.
        self.reusable = (
            self._state == _IDLE
            and self._keep_alive
            and (exc is None or isinstance(exc, HttpStatusError))
        )
        released = self._drain_deadline is not None
        self._stop()
        if released:
            # Its caller let go before the body ended: the end settles the connection.
            self.release()
        elif not done.done():
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

    def _end_stream(self) -> None:
        """The handler has all it needs: its caller gets on with it while the connection
        reads the rest of the body."""
        self._on_event = _ignore
        self._draining = True
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    def _receive(self, data: bytes) -> None:
        if self._buffer:
            data, self._buffer = self._buffer + data, b""
        pos = 0
        if self._state == _HEAD:
            pos = self._head(data)
            if pos < 0:
                return
        if self._state == _LENGTH:
            piece = data[pos : pos + self._left]
            self._left -= len(piece)
            self._body(piece)
            if not self._left:
                # More than the announced length: the connection's framing is off.
                self._keep_alive = self._keep_alive and pos + len(piece) == len(data)
                self._end_body()
        elif self._state == _UNTIL_CLOSE:
            self._body(data[pos:])
        else:
            self._chunks(data, pos)

    def _head(self, data: bytes) -> int:
        """Where the body starts in `data`; -1 while the head is incomplete."""
        pos = 0
        while True:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                if len(data) - pos > HEAD_BYTES:
                    raise TransportFailure("broken")
                self._buffer = data[pos:]
                return -1
            lines = data[pos:end].split(b"\r\n")
            pos = end + 4
            status_line = _STATUS_LINE.fullmatch(lines[0])
            if status_line is None:
                raise TransportFailure("broken")
            status = int(status_line[2])
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            if status < 200 and status != 101:
                continue
            break
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            name = name.lower()
            if not colon or not name or name != name.strip():
                raise TransportFailure("broken")
            value = value.strip()
            headers[name] = headers[name] + b", " + value if name in headers else value
        self._status = status
        connection = {token.strip() for token in headers.get(b"connection", b"").split(b",")}
        self._keep_alive = status_line[1] == b"1" and b"close" not in connection
        coding = headers.get(b"content-encoding", b"identity").lower()
        if status == 101 or (status < 300 and coding != b"identity"):
            raise TransportFailure("broken")
        transfer = headers.get(b"transfer-encoding")
        length = headers.get(b"content-length")
        if status in (204, 304):
            self._state, self._left = _LENGTH, 0
        elif transfer is not None:
            if transfer.lower() != b"chunked":
                raise TransportFailure("broken")
            self._state = _CHUNK_SIZE_LINE
            # Both framings at once: the server may be confused, do not reuse its connection.
            self._keep_alive = self._keep_alive and length is None
        elif length is not None:
            if not length.isdigit():
                raise TransportFailure("broken")
            self._state, self._left = _LENGTH, int(length)
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False
        return pos

    def _chunks(self, data: bytes, pos: int) -> None:
        # The chunks' data in this read, handed to the SSE decoder in one piece.
        body: list[bytes] = []
        end = len(data)
        while pos < end:
            if self._state == _CHUNK_DATA:
                stop = pos + self._left
                body.append(data[pos:stop])
                if stop > end:
                    self._left = stop - end
                    break
                pos, self._left = stop, 0
                # The CRLF after the data mostly came with it: no trip through the lines.
                if data.startswith(b"\r\n", pos):
                    pos += 2
                    self._state = _CHUNK_SIZE_LINE
                else:
                    self._state = _CHUNK_END
                continue
            if self._state == _CHUNK_SIZE_LINE:
                size = _CHUNK_SIZE.match(data, pos)
                if size is not None:
                    pos = size.end()
                    self._left = int(size[1], 16)
                    self._state = _CHUNK_DATA if self._left else _TRAILER
                    continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                if end - pos > LINE_BYTES:
                    raise TransportFailure("broken")
                self._buffer = data[pos:]
                break
            line = data[pos:newline].rstrip(b"\r")
            pos = newline + 1
            # A whole line that is no chunk size, or text where the data's CRLF belongs.
            if self._state == _CHUNK_SIZE_LINE or (self._state == _CHUNK_END and line):
                raise TransportFailure("broken")
            if self._state == _CHUNK_END:
                self._state = _CHUNK_SIZE_LINE
            elif not line:
                # The blank line after the last chunk's trailers: the body ended.
                if body:
                    self._body(b"".join(body))
                self._keep_alive = self._keep_alive and pos == end
                self._end_body()
                return
        if body:
            self._body(b"".join(body))

    def _body(self, piece: bytes) -> None:
        if self._status < 300:
            # Caught here, the framing is read on as if nothing happened: the rest of this
            # read may end the body.
            try:
                for event, data in self._decoder.feed(piece):
                    self._on_event(event, data)
            except EndOfStream:
                self._end_stream()
            return
        self._error_body += piece
        if len(self._error_body) >= ERROR_BODY_BYTES:
            raise HttpStatusError(self._status, bytes(self._error_body[:ERROR_BODY_BYTES]))

    def _end_body(self) -> None:
        self._state = _IDLE
        if self._status >= 300:
            raise HttpStatusError(self._status, bytes(self._error_body))
        with suppress(EndOfStream):
            for event, data in self._decoder.end():
                self._on_event(event, data)
        self._finish(None)
