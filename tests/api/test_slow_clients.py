"""Slow clients (slow-loris): a request's line and headers get HEADER_TIMEOUT_SECONDS, then
a 408 and the connection closes; keep-alive, pipelining, streams and WebSockets are untouched.

Raw sockets against the real API process, which runs here with a short header timeout.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

from tests.conftest import start_api
from tests.sse import new_conversation, read_events, text_of

HEADER_TIMEOUT = 1.5
# Generous: the machine is shared and loaded; the point is "closed", not "closed on time".
CLOSED_BY = 4 * HEADER_TIMEOUT
# uvicorn's --timeout-keep-alive default, which api_command keeps.
KEEP_ALIVE = 5.0
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\n\r\n"


@pytest.fixture(scope="module")
def slow_api(service_env: dict[str, str]) -> Iterator[str]:
    server, base_url = start_api({**service_env, "HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)})
    yield base_url
    server.stop()


def _connect(base_url: str) -> socket.socket:
    parts = urlsplit(base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=CLOSED_BY + 5)


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One response with a Content-Length: (head, body, bytes read past it)."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {buffered!r}"
        buffered += chunk
    head, _, rest = buffered.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed inside a response body"
        rest += chunk
    return head, rest[:length], rest[length:]


def _assert_request_timeout(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines[0].startswith("http/1.1 408"), answer
    assert "connection: close" in lines
    assert "content-type: application/json" in lines
    assert json.loads(body) == {
        "detail": "The request headers did not arrive in time.",
        "code": "request_timeout",
    }


@pytest.mark.parametrize(
    "partial",
    [b"", b"GET /heal", b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\nX-Slow: 1"],
    ids=["nothing", "partial-request-line", "partial-headers"],
)
def test_an_incomplete_request_is_answered_408_and_closed(slow_api: str, partial: bytes) -> None:
    started = time.monotonic()
    with _connect(slow_api) as sock:
        sock.sendall(partial)
        answer = _read_until_closed(sock)
    elapsed = time.monotonic() - started
    _assert_request_timeout(answer)
    assert HEADER_TIMEOUT * 0.95 < elapsed < CLOSED_BY, elapsed


def _trickle(sock: socket.socket, chunk: bytes) -> bytes:
    """Sends `chunk` every quarter timeout, never more than CLOSED_BY long, until the
    server answers; returns the answer."""
    interval = HEADER_TIMEOUT / 4
    for _ in range(int(CLOSED_BY / interval)):
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:
            break
        sock.sendall(chunk)
    return _read_until_closed(sock)


def _timeouts_counted(base_url: str) -> float:
    metrics = httpx.get(base_url + "/metrics", timeout=10).text
    [line] = [
        line
        for line in metrics.splitlines()
        if line.startswith("switchboard_http_header_timeouts_total ")
    ]
    return float(line.split()[1])


def test_trickled_headers_do_not_restart_the_clock(slow_api: str) -> None:
    """Each byte arriving in time is not enough: the whole head has one deadline."""
    counted = _timeouts_counted(slow_api)
    started = time.monotonic()
    with _connect(slow_api) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = _trickle(sock, b"X-Drip: 1\r\n")
    elapsed = time.monotonic() - started
    _assert_request_timeout(answer)
    assert HEADER_TIMEOUT * 0.95 < elapsed < CLOSED_BY, elapsed
    assert _timeouts_counted(slow_api) == counted + 1


def test_blank_lines_on_a_keep_alive_connection_do_not_hold_it(slow_api: str) -> None:
    """The parser skips blank lines between requests without beginning one, and any byte
    cancels uvicorn's keep-alive timer: without ours this connection would stay open."""
    with _connect(slow_api) as sock:
        sock.sendall(REQUEST)
        head, _, _ = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        answer = _trickle(sock, b"\r\n")
    elapsed = time.monotonic() - started
    _assert_request_timeout(answer)
    assert HEADER_TIMEOUT * 0.95 < elapsed < CLOSED_BY, elapsed


def test_each_request_on_a_connection_gets_the_whole_timeout(slow_api: str) -> None:
    """The clock of a keep-alive connection's next request starts at that request."""
    with _connect(slow_api) as sock:
        sock.sendall(REQUEST)
        head, _, _ = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200")
        time.sleep(HEADER_TIMEOUT * 0.6)
        started = time.monotonic()
        sock.sendall(b"GET /heal")
        answer = _read_until_closed(sock)
    elapsed = time.monotonic() - started
    _assert_request_timeout(answer)
    assert HEADER_TIMEOUT * 0.95 < elapsed < CLOSED_BY, elapsed


def test_an_idle_keep_alive_connection_serves_its_next_request(slow_api: str) -> None:
    """Idle between requests is uvicorn's keep-alive timeout, not the header timeout."""
    idle = 2 * HEADER_TIMEOUT
    assert idle < KEEP_ALIVE - 1
    with _connect(slow_api) as sock:
        sock.sendall(REQUEST)
        head, _, leftover = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200") and not leftover
        time.sleep(idle)
        sock.sendall(REQUEST)
        head, body, _ = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert json.loads(body) == {"status": "ok"}


def test_pipelined_requests_are_answered_before_the_incomplete_one_times_out(
    slow_api: str,
) -> None:
    with _connect(slow_api) as sock:
        sock.sendall(REQUEST + REQUEST + b"GET /heal")
        first, _, rest = _read_response(sock)
        second, _, rest = _read_response(sock, rest)
        started = time.monotonic()
        answer = rest + _read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    _assert_request_timeout(answer)
    assert elapsed < CLOSED_BY, elapsed


@pytest.mark.usefixtures("celery_worker")
async def test_a_stream_runs_longer_than_the_header_timeout(slow_api: str, make_user) -> None:
    user = make_user()
    # Forty tokens 0.1 s apart: the reply streams for about 3 x the header timeout.
    content = "[[tag=slow-stream tokens=40 delay=0.1]]"
    async with httpx.AsyncClient(base_url=slow_api, timeout=30) as client:
        conversation_id = await new_conversation(client, user)
        started = time.monotonic()
        async with client.stream(
            "POST",
            f"/v1/conversations/{conversation_id}/chat/stream",
            json={"content": content},
            headers=user.headers,
        ) as response:
            assert response.status_code == 200
            events = await read_events(response)
        elapsed = time.monotonic() - started
    assert elapsed > 2 * HEADER_TIMEOUT, elapsed
    assert events[-1].event == "done"
    assert text_of(events) == events[-1].data["message"]["content"]


@pytest.mark.usefixtures("celery_worker")
async def test_a_request_pipelined_behind_a_stream_neither_cuts_it_nor_escapes(
    slow_api: str, make_user
) -> None:
    """The incomplete request's clock runs out while the stream is still going: no 408 can
    be written into that response, so it waits for the stream's end, then comes."""
    user = make_user()
    async with httpx.AsyncClient(base_url=slow_api, timeout=30) as client:
        conversation_id = await new_conversation(client, user)
    body = json.dumps({"content": "[[tag=pipelined tokens=40 delay=0.1]]"}).encode()
    request = b"\r\n".join(
        [
            f"POST /v1/conversations/{conversation_id}/chat/stream HTTP/1.1".encode(),
            b"Host: switchboard",
            f"Authorization: Bearer {user.access_token}".encode(),
            b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
            b"",
            body,
        ]
    )

    def exchange() -> tuple[bytes, float]:
        started = time.monotonic()
        with _connect(slow_api) as sock:
            sock.sendall(request + b"GET /heal")
            return _read_until_closed(sock), time.monotonic() - started

    answer, elapsed = await asyncio.to_thread(exchange)
    stream, end, after = answer.partition(b"\r\n0\r\n\r\n")
    assert stream.startswith(b"HTTP/1.1 200") and end, answer[:2000]
    assert b"event: done" in stream
    _assert_request_timeout(after)
    assert elapsed > 2 * HEADER_TIMEOUT, elapsed


async def test_a_websocket_outlives_the_header_timeout(slow_api: str, make_user) -> None:
    user = make_user()
    async with httpx.AsyncClient(base_url=slow_api, timeout=30) as client:
        conversation_id = await new_conversation(client, user)
    url = slow_api.replace("http", "ws") + f"/v1/conversations/{conversation_id}/ws"
    async with websockets.connect(url + f"?token={user.access_token}") as ws:
        await asyncio.sleep(2 * HEADER_TIMEOUT)
        await ws.send(json.dumps({"type": "nonsense"}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answer["type"] == "error" and answer["code"] == "validation_error"


def test_a_body_that_trickles_is_cut_off(service_env: dict[str, str]) -> None:
    """BODY_TIMEOUT_SECONDS: headers on time, then a body that never completes → 408, closed."""
    body_timeout = 1.5
    server, base_url = start_api({**service_env, "BODY_TIMEOUT_SECONDS": str(body_timeout)})
    try:
        sock = _connect(base_url)
        sock.sendall(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: switchboard\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"email": '
        )
        started = time.monotonic()
        answer = _read_until_closed(sock)
        elapsed = time.monotonic() - started
        sock.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        lines = head.decode().lower().split("\r\n")
        assert lines[0].startswith("http/1.1 408"), answer
        assert "connection: close" in lines
        assert json.loads(payload)["code"] == "request_timeout"
        assert body_timeout <= elapsed < 4 * body_timeout + 2
    finally:
        server.stop()
