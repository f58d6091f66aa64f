"""The providers' streaming HTTP client (workers/providers/sse_transport.py) against a
loopback server that answers each request as its test scripts it: framings cut at
awkward places, error answers, stalls, cut-off bodies and kept-alive connections."""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from workers.event_loop import event_loop
from workers.providers import sse_transport
from workers.providers.base import HttpRequest
from workers.providers.sse import EndOfStream
from workers.providers.sse_transport import (
    HttpStatusError,
    TransportFailure,
    post_sse,
    tls_context,
)


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis, and
    truncating every table before each test would be most of this module's run time."""


Event = tuple[str | None, bytes]
# What the server does with one request: writes to the connection, or closes it.
Answer = Callable[["Upstream", asyncio.StreamWriter], Awaitable[None]]


class Upstream:
    """A loopback HTTP/1.1 server: the requests it reads, over all its connections, get
    the given answers in order; a connection closes once they are used up."""

    def __init__(self, *answers: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answers = list(answers)
        self.tls = tls
        self.connections = 0
        # The connections' numbers (1 for the first accepted) as each one ends: the
        # client closed it, or the answers ran out.
        self.ended: list[int] = []
        self.requests: list[bytes] = []
        self.port = 0
        # Set on the way out: a stalled answer ends, the connections close.
        self.done = asyncio.Event()
        self._handlers: list[tuple[asyncio.Task[Any], asyncio.StreamWriter]] = []

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        self.done.set()
        for _, writer in self._handlers:
            writer.close()
        await asyncio.gather(*(handler for handler, _ in self._handlers))
        await self._server.wait_closed()

    def url(self, path: str = "/v1/chat/completions") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.append((task, writer))
        self.connections += 1
        number = self.connections
        try:
            while self.answers and not writer.is_closing():
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
                assert length is not None, head
                self.requests.append(head + await reader.readexactly(int(length[1])))
                await self.answers.pop(0)(self, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away: what some tests are about
        finally:
            writer.close()
            self.ended.append(number)


def respond(*pieces: bytes, then_stall: bool = False) -> Answer:
    """Writes the pieces with a pause after each, so that each is a read of its own."""

    async def answer(upstream: Upstream, writer: asyncio.StreamWriter) -> None:
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(0.01)
            writer.write(piece)
            await writer.drain()
        if then_stall:
            await upstream.done.wait()

    return answer


def respond_bytewise(response: bytes) -> Answer:
    async def answer(upstream: Upstream, writer: asyncio.StreamWriter) -> None:
        for i in range(len(response)):
            writer.write(response[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0)

    return answer


async def hang_up(upstream: Upstream, writer: asyncio.StreamWriter) -> None:
    writer.close()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(map(chunk, chunks)) + b"0\r\n" + trailer + b"\r\n"


def cut(data: bytes, *positions: int) -> list[bytes]:
    bounds = [0, *positions, len(data)]
    return [data[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
CHUNKED_HEAD = SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
FIRST = b'data: {"choices":[{"delta":{"content":"Hel"}}]}\r\n\r\n'
SECOND = b'event: delta\r\ndata: {"choices":[{"delta":{"content":"lo"}}]}\r\n\r\n'
THIRD = b"data: [DONE]\r\n\r\n"
EVENTS: list[Event] = [
    (None, b'{"choices":[{"delta":{"content":"Hel"}}]}'),
    ("delta", b'{"choices":[{"delta":{"content":"lo"}}]}'),
    (None, b"[DONE]"),
]
# All the events, not yet the chunked body's end.
UNENDED = CHUNKED_HEAD + chunk(FIRST) + chunk(SECOND) + chunk(THIRD)


def request(url: str, **headers: str) -> HttpRequest:
    return HttpRequest(url, {"Authorization": "Bearer k", **headers}, b'{"stream":true}')


async def events_of(
    url: str, *, read_timeout: float = 5.0, handler: Callable[[Event], None] | None = None
) -> list[Event]:
    events: list[Event] = []

    def on_event(event: str | None, data: bytes) -> None:
        events.append((event, data))
        if handler is not None:
            handler((event, data))

    await post_sse(request(url), on_event, connect_timeout=5.0, read_timeout=read_timeout)
    return events


async def test_chunked_body_cut_inside_sizes_crlfs_and_sse_lines() -> None:
    # One chunk holds an event and the start of the next; the third event is its own chunk.
    body = chunked(FIRST + SECOND[:20], SECOND[20:], THIRD)
    size_end = body.index(b"\r\n")
    data_end = body.index(b"\r\n", size_end + 2 + len(FIRST) + 20)
    terminator = body.rindex(b"0\r\n\r\n")
    pieces = cut(
        body,
        1,  # inside the first chunk-size line
        size_end + 1,  # between its CR and LF
        size_end + 8,  # inside the first SSE line
        size_end + 2 + len(FIRST) - 1,  # between the first event's blank line's CR and LF
        data_end + 1,  # inside the CRLF that closes the chunk's data
        terminator + 2,  # inside the last chunk's size line
        terminator + 4,  # inside the blank line that ends the body
    )
    async with Upstream(respond(CHUNKED_HEAD[:9], CHUNKED_HEAD[9:], *pieces)) as upstream:
        assert await events_of(upstream.url()) == EVENTS
    sent = upstream.requests[0]
    assert sent.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{upstream.port}\r\n".encode() in sent
    assert b"\r\nContent-Length: 15\r\n" in sent
    assert b"accept-encoding" not in sent.lower()
    assert sent.endswith(b'\r\n\r\n{"stream":true}')


async def test_chunked_body_a_byte_at_a_time_with_extensions_and_trailers() -> None:
    body = chunked(FIRST, SECOND, THIRD, trailer=b"X-Checksum: 1\r\n").replace(
        b"\r\n", b";ext=1\r\n", 1
    )
    async with Upstream(respond_bytewise(CHUNKED_HEAD + body)) as upstream:
        assert await events_of(upstream.url()) == EVENTS


async def test_content_length_body() -> None:
    body = FIRST + SECOND + THIRD
    head = SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(body)
    async with Upstream(respond(head + body[:30], body[30:])) as upstream:
        assert await events_of(upstream.url()) == EVENTS


async def test_body_read_until_the_server_closes() -> None:
    # The last event lacks its blank line: the end of the body ends it.
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    async with Upstream(respond(head, FIRST + SECOND, b"data: [DONE]")) as upstream:
        assert await events_of(upstream.url()) == EVENTS


@pytest.mark.parametrize("status", [400, 429, 503])
async def test_an_error_status_with_a_json_body(status: int) -> None:
    body = b'{"error":{"message":"nope","type":"invalid_request_error"}}'
    head = b"HTTP/1.1 %d Whatever\r\nContent-Type: application/json\r\n" % status
    framings = {
        400: head + b"Content-Length: %d\r\n\r\n" % len(body) + body,
        429: head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body[:10], body[10:]),
        503: head + b"Connection: close\r\n\r\n" + body,
    }
    async with Upstream(respond(framings[status])) as upstream:
        with pytest.raises(HttpStatusError) as raised:
            await events_of(upstream.url())
    assert (raised.value.status, raised.value.body) == (status, body)


async def test_an_error_body_is_read_up_to_64_kib() -> None:
    head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 200000\r\n\r\n"
    async with Upstream(respond(head + b"x" * 100_000, then_stall=True)) as upstream:
        with pytest.raises(HttpStatusError) as raised:
            await events_of(upstream.url())
    assert raised.value.body == b"x" * 65536


@pytest.mark.parametrize(
    ("sent", "expected"),
    [(b"", []), (CHUNKED_HEAD, []), (CHUNKED_HEAD + chunk(FIRST), EVENTS[:1])],
    ids=["after-the-request", "after-the-head", "after-an-event"],
)
async def test_a_server_that_stalls_times_out(sent: bytes, expected: list[Event]) -> None:
    events: list[Event] = []
    async with Upstream(respond(sent, then_stall=True)) as upstream:
        with pytest.raises(TransportFailure) as raised:
            await events_of(upstream.url(), read_timeout=0.3, handler=events.append)
    assert raised.value.kind == "timeout"
    assert events == expected


async def test_data_keeps_a_slow_stream_alive_past_the_read_timeout() -> None:
    # Each pause is well within the read timeout, the whole stream longer than it.
    async def answer(upstream: Upstream, writer: asyncio.StreamWriter) -> None:
        writer.write(CHUNKED_HEAD)
        for _ in range(10):
            await asyncio.sleep(0.05)
            writer.write(chunk(FIRST))
        writer.write(b"0\r\n\r\n")

    async with Upstream(answer) as upstream:
        assert await events_of(upstream.url(), read_timeout=0.3) == EVENTS[:1] * 10


@pytest.mark.parametrize(
    "response",
    [
        CHUNKED_HEAD + chunk(FIRST) + b"40\r\ndata: cut",
        CHUNKED_HEAD + chunk(FIRST),
        SSE_HEAD + b"Content-Length: 500\r\n\r\n" + FIRST,
        SSE_HEAD,
        b"",
    ],
    ids=["inside-a-chunk", "between-chunks", "short-of-its-length", "inside-the-head", "no-answer"],
)
async def test_a_server_that_closes_before_the_end_breaks_the_stream(response: bytes) -> None:
    async with Upstream(respond(response)) as upstream:
        with pytest.raises(TransportFailure) as raised:
            await events_of(upstream.url())
    assert raised.value.kind == "broken"


@pytest.mark.parametrize(
    "response",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        SSE_HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        SSE_HEAD + b"Content-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx",
        SSE_HEAD + b"Content-Length: -1\r\n\r\n",
        SSE_HEAD + b" folded: header\r\n\r\n",
    ],
    ids=["not-http", "bad-chunk-size", "transfer-coding", "content-coding", "length", "fold"],
)
async def test_malformed_http_breaks_the_stream(response: bytes) -> None:
    async with Upstream(respond(response, then_stall=True)) as upstream:
        with pytest.raises(TransportFailure) as raised:
            await events_of(upstream.url())
    assert raised.value.kind == "broken"


async def test_a_refused_connection() -> None:
    async with Upstream() as upstream:
        url = upstream.url()
    with pytest.raises(TransportFailure) as raised:
        await events_of(url)
    assert raised.value.kind == "connect"


async def test_end_of_stream_returns_at_once() -> None:
    def enough(event: Event) -> None:
        if event[0] == "delta":
            raise EndOfStream

    # The server would stall for ever after them: only the client's stop ends the call.
    first = respond(CHUNKED_HEAD + chunk(FIRST) + chunk(SECOND), then_stall=True)
    async with Upstream(first, respond(CHUNKED_HEAD + chunked(THIRD))) as upstream:
        assert await events_of(upstream.url(), handler=enough) == EVENTS[:2]
        # That answer has not ended: its connection, still draining, is not the next
        # request's.
        assert await events_of(upstream.url()) == EVENTS[2:]
    assert upstream.connections == 2


def end_at_done(event: Event) -> None:
    """As the OpenAI adapter's handler: everything is in at [DONE]."""
    if event[1] == b"[DONE]":
        raise EndOfStream


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_connection_drained_after_the_call_returned_is_reused() -> None:
    terminated = asyncio.Event()

    # The body's end a segment of its own, behind an event no handler should see.
    async def answer(upstream: Upstream, writer: asyncio.StreamWriter) -> None:
        writer.write(UNENDED)
        await asyncio.sleep(0.05)
        terminated.set()
        writer.write(chunked(FIRST))

    async with Upstream(answer, respond(CHUNKED_HEAD + chunked(THIRD))) as upstream:
        events = await events_of(upstream.url(), handler=end_at_done)
        assert not terminated.is_set()
        await terminated.wait()
        # The body's end on its way to the client.
        await asyncio.sleep(0.05)
        assert await events_of(upstream.url()) == EVENTS[2:]
    assert events == EVENTS
    assert upstream.connections == 1
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_a_connection_drained_in_the_same_read_is_reused(framing: str) -> None:
    body = FIRST + SECOND + THIRD
    response = {
        "chunked": CHUNKED_HEAD + chunked(FIRST, SECOND, THIRD),
        "length": SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body,
    }[framing]
    async with Upstream(respond(response), respond(response)) as upstream:
        assert await events_of(upstream.url(), handler=end_at_done) == EVENTS
        assert await events_of(upstream.url(), handler=end_at_done) == EVENTS
    assert upstream.connections == 1


async def test_a_connection_not_drained_by_the_deadline_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse_transport, "DRAIN_SECONDS", 0.3)
    loop = asyncio.get_running_loop()
    async with Upstream(respond(UNENDED), respond(CHUNKED_HEAD + chunked(THIRD))) as upstream:
        assert await events_of(upstream.url(), handler=end_at_done) == EVENTS
        returned = loop.time()
        assert await events_of(upstream.url()) == EVENTS[2:]
        assert upstream.connections == 2
        await until(lambda: 1 in upstream.ended)
        # Not the read timeout (5 s) nor before the deadline (timers may round to the ms).
        assert 0.29 <= loop.time() - returned < 4


@pytest.mark.parametrize("pause", [0.0, 0.05], ids=["with-the-events", "later"])
async def test_a_server_that_closes_mid_drain(pause: float) -> None:
    async def answer(upstream: Upstream, writer: asyncio.StreamWriter) -> None:
        writer.write(UNENDED)
        await asyncio.sleep(pause)
        writer.close()

    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        async with Upstream(answer, respond(CHUNKED_HEAD + chunked(THIRD))) as upstream:
            assert await events_of(upstream.url(), handler=end_at_done) == EVENTS
            await until(lambda: 1 in upstream.ended)
            # The close on its way to the client.
            await asyncio.sleep(0.05)
            assert await events_of(upstream.url()) == EVENTS[2:]
    finally:
        loop.set_exception_handler(handler)
    assert upstream.connections == 2
    assert reported == []


@pytest.mark.parametrize(
    "response",
    [
        CHUNKED_HEAD + chunked(FIRST, SECOND, THIRD),
        # The last event ends with the body: the handler fails once the body was all read.
        SSE_HEAD + b"Content-Length: %d\r\n\r\n" % (len(FIRST) + 12) + FIRST + b"data: [DONE]",
    ],
    ids=["mid-body", "at-the-end"],
)
async def test_an_exception_of_the_handler_comes_out_as_it_is(response: bytes) -> None:
    failure = LookupError("no such tool")

    def fail_at_the_end(event: Event) -> None:
        if event[1] == b"[DONE]":
            raise failure

    async with Upstream(respond(response), respond(response)) as upstream:
        with pytest.raises(LookupError) as raised:
            await events_of(upstream.url(), handler=fail_at_the_end)
        assert raised.value is failure
        # Its connection was closed, not left for the next request.
        await events_of(upstream.url())
    assert upstream.connections == 2


async def test_a_kept_alive_connection_serves_the_next_requests() -> None:
    body = FIRST + SECOND + THIRD
    length = SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
    error = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}"
    async with Upstream(
        respond(CHUNKED_HEAD + chunked(body)), respond(error), respond(length)
    ) as upstream:
        assert await events_of(upstream.url()) == EVENTS
        with pytest.raises(HttpStatusError):
            await events_of(upstream.url())
        assert await events_of(upstream.url()) == EVENTS
    assert upstream.connections == 1
    assert len(upstream.requests) == 3


async def test_a_connection_the_server_closes_is_not_reused() -> None:
    body = CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + chunked(THIRD)
    async with Upstream(respond(body), respond(body)) as upstream:
        assert await events_of(upstream.url()) == EVENTS[2:]
        assert await events_of(upstream.url()) == EVENTS[2:]
    assert upstream.connections == 2


async def test_a_request_on_a_connection_the_server_just_dropped_goes_out_again() -> None:
    # The server drops the kept-alive connection without answering, as one whose idle
    # timeout ran out while the request was on its way.
    body = CHUNKED_HEAD + chunked(THIRD)
    async with Upstream(respond(body), hang_up, respond(body)) as upstream:
        assert await events_of(upstream.url()) == EVENTS[2:]
        assert await events_of(upstream.url()) == EVENTS[2:]
    assert upstream.connections == 2
    assert len(upstream.requests) == 3


def self_signed(name: str, directory: Path) -> tuple[ssl.SSLContext, str]:
    """A server context for `name` and the certificate (PEM) that a client must trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    (directory / "cert.pem").write_text(pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return server, pem


async def test_tls_to_a_pinned_address_checks_the_real_name(tmp_path: Path) -> None:
    # A name of its own: the context would find an earlier run's certificate by its name.
    name = f"llm-{secrets.token_hex(4)}.example.test"
    server, pem = self_signed(name, tmp_path)
    body = CHUNKED_HEAD + chunked(FIRST, SECOND, THIRD)
    async with Upstream(respond(body), respond(body), tls=server) as upstream:
        # As a pinned user endpoint: the URL names the checked address.
        pinned = HttpRequest(upstream.url(), {"Host": name}, b"{}", server_hostname=name)
        events: list[Event] = []

        async def call() -> None:
            await post_sse(
                pinned,
                lambda event, data: events.append((event, data)),
                connect_timeout=5.0,
                read_timeout=5.0,
            )

        with pytest.raises(TransportFailure) as raised:
            await call()
        assert raised.value.kind == "connect"
        # The process' context trusts this certificate from here on; no other test uses it.
        tls_context().load_verify_locations(cadata=pem)
        await call()
        await call()
    assert events == EVENTS * 2
    assert upstream.connections == 1
    assert all(f"\r\nHost: {name}\r\n".encode() in sent for sent in upstream.requests)


def test_the_same_on_the_chat_workers_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's loop is uvloop (workers/event_loop.py), whose transports and timers
    are not asyncio's own: the main cases once more, on that loop's thread."""

    async def cases() -> None:
        await test_chunked_body_cut_inside_sizes_crlfs_and_sse_lines()
        await test_body_read_until_the_server_closes()
        await test_an_error_status_with_a_json_body(429)
        await test_a_server_that_stalls_times_out(CHUNKED_HEAD + chunk(FIRST), EVENTS[:1])
        await test_data_keeps_a_slow_stream_alive_past_the_read_timeout()
        await test_a_server_that_closes_before_the_end_breaks_the_stream(CHUNKED_HEAD)
        await test_a_refused_connection()
        await test_end_of_stream_returns_at_once()
        await test_a_connection_drained_after_the_call_returned_is_reused()
        await test_a_connection_drained_in_the_same_read_is_reused("chunked")
        await test_a_connection_not_drained_by_the_deadline_is_closed(monkeypatch)
        await test_a_server_that_closes_mid_drain(0.0)
        await test_a_server_that_closes_mid_drain(0.05)
        await test_a_kept_alive_connection_serves_the_next_requests()
        await test_a_request_on_a_connection_the_server_just_dropped_goes_out_again()
        await test_tls_to_a_pinned_address_checks_the_real_name(tmp_path)

    event_loop.run(cases())
