"""Body limits (API.md, "Errors"): a body over its route's limit is 413
`payload_too_large` in the route's envelope, answered before the body is read whole,
whether its size is declared (Content-Length) or only known as it streams in
(chunked); a body at the limit is read. Raw sockets, because what happens to the
connection after a 413 is part of the contract and httpx silently reconnects.

What the server does after a 413 (checked here): it sends no `Connection: close`,
reads and throws away the rest of the body as it arrives, and the next request on
the same connection is answered; clients (httpx, requests, the SDKs) send the whole
body and read the 413 cleanly, where a close while they still send would reset the
connection under them. The exception is a client waiting for `100 Continue`: its
body never comes, so that connection must end.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
import pytest

from core.config import settings

LIMIT = settings.max_body_bytes
AI_LIMIT = settings.max_ai_body_bytes
CHUNK = 64 * 1024


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class Connection:
    """One TCP connection; a request after the server closed it fails instead of
    reconnecting, so "the next request works" means on this same connection."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = f"{parts.hostname}:{parts.port}"
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def head(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Length"] = str(len(body))
        self.sock.sendall(self.head(method, path, headers) + (body or b""))
        return self.read()

    def answered(self) -> bool:
        """Whether an answer (or the end of the connection) is waiting to be read."""
        return bool(self.buffer) or bool(select.select([self.sock], [], [], 0)[0])

    def read(self) -> Answer:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        # Every answer of these routes has a length (the guard's and /healthz's alike).
        size = int(headers["content-length"])
        while len(self.buffer) < size:
            self._fill()
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return Answer(int(status_line.split(" ", 2)[1]), headers, body)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data


@pytest.fixture
def conn(api_server: str) -> Iterator[Connection]:
    connection = Connection(api_server)
    yield connection
    connection.close()


@pytest.fixture
def auth(make_user) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_user().access_token}"}


def padded(document: dict, size: int) -> bytes:
    """`document` as JSON of exactly `size` bytes: whitespace after a JSON value is
    still the same valid document, so only the size can be refused."""
    text = json.dumps(document).encode()
    assert len(text) <= size
    return text + b" " * (size - len(text))


def api_pid(api_server: str) -> int:
    port = str(urlsplit(api_server).port)
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "uvicorn" in cmdline and port in cmdline:
            return process.pid
    raise AssertionError(f"no API process on port {port}")


def assert_ours(answer: Answer) -> None:
    assert answer.status == 413, answer.body[:300]
    assert answer.json()["code"] == "payload_too_large"
    assert isinstance(answer.json()["detail"], str)
    assert "close" not in answer.headers.get("connection", "")


def assert_openai(answer: Answer) -> None:
    assert answer.status == 413, answer.body[:300]
    error = answer.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and {"param"} <= set(error)
    assert "close" not in answer.headers.get("connection", "")


def assert_next_request_works(conn: Connection) -> None:
    health = conn.request("GET", "/healthz")
    assert health.status == 200, health.body


def send_chunked(conn: Connection, path: str, headers: dict[str, str], total: int) -> Answer:
    """`total` bytes as a chunked body (no Content-Length), then its end; the answer.

    The whole body goes out even after the answer came: the server must throw the rest
    away as it arrives, not keep it, and still find the next request where it starts.
    """
    head = {**headers, "Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    conn.sock.sendall(conn.head("POST", path, head))
    chunk = b"[" + b" " * (CHUNK - 1)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    answered_after = None
    for sent in range(CHUNK, total + CHUNK, CHUNK):
        conn.sock.sendall(frame)
        if answered_after is None and conn.answered():
            answered_after = sent
    conn.sock.sendall(b"0\r\n\r\n")
    answer = conn.read()
    # Answered while the body still streamed in (socket buffers let a few MiB more
    # through first), not after the server had read it all.
    assert answered_after is not None and answered_after < total, (answered_after, total)
    return answer


def test_over_the_limit_on_our_route_is_413_in_our_envelope(
    conn: Connection, auth: dict[str, str]
) -> None:
    body = padded({"title": "too big"}, LIMIT + 1)
    answer = conn.request(
        "POST", "/v1/conversations", body, {**auth, "Content-Type": "application/json"}
    )
    assert_ours(answer)
    assert_next_request_works(conn)
    listed = conn.request("GET", "/v1/conversations", headers=auth)
    assert listed.json()["total"] == 0


def test_at_the_limit_on_our_route_is_read(conn: Connection, auth: dict[str, str]) -> None:
    body = padded({"title": "just fits"}, LIMIT)
    answer = conn.request(
        "POST", "/v1/conversations", body, {**auth, "Content-Type": "application/json"}
    )
    assert answer.status == 201, answer.body[:300]
    assert answer.json()["title"] == "just fits"
    assert_next_request_works(conn)


def test_over_the_limit_on_the_openai_route_is_413_in_openai_shape(
    conn: Connection, auth: dict[str, str]
) -> None:
    body = padded({"model": "deepseek-chat", "messages": []}, AI_LIMIT + 1)
    answer = conn.request(
        "POST", "/v1/chat/completions", body, {**auth, "Content-Type": "application/json"}
    )
    assert_openai(answer)
    assert_next_request_works(conn)


def test_at_the_limit_on_the_openai_route_is_read(conn: Connection, auth: dict[str, str]) -> None:
    # Read and judged on its content: no messages is OpenAI's 400, not a 413.
    body = padded({"model": "deepseek-chat", "messages": []}, AI_LIMIT)
    answer = conn.request(
        "POST", "/v1/chat/completions", body, {**auth, "Content-Type": "application/json"}
    )
    assert answer.status == 400, answer.body[:300]
    assert answer.json()["error"]["param"] == "messages"
    assert_next_request_works(conn)


def test_a_chunked_body_over_the_limit_is_cut_off_without_being_kept(
    api_server: str, conn: Connection, auth: dict[str, str]
) -> None:
    api = psutil.Process(api_pid(api_server))
    before = api.memory_info().rss
    # Far more than earlier tests had the process allocate and free (a freed 32 MiB body
    # is reused without the RSS growing), so keeping it would show.
    total = 128 * LIMIT
    answer = send_chunked(conn, "/v1/conversations", auth, total)
    grown = api.memory_info().rss - before
    assert_ours(answer)
    # Held whole, the body alone would add `total`; the limit's worth is all it may keep.
    assert grown < total // 4, f"the API grew by {grown} bytes for a {total}-byte body"
    assert_next_request_works(conn)


def test_over_the_limit_awaiting_100_continue_closes_the_connection(
    conn: Connection, auth: dict[str, str]
) -> None:
    # The client waits for `100 Continue` before sending the body; answered 413 instead,
    # it never sends it. A server that kept the connection would read the client's next
    # request as the rest of this body: swallowed, unanswered. So this 413 must close.
    headers = {
        **auth,
        "Content-Type": "application/json",
        "Content-Length": str(LIMIT + 1),
        "Expect": "100-continue",
    }
    conn.sock.sendall(conn.head("POST", "/v1/conversations", headers))
    answer = conn.read()
    assert answer.status == 413, answer.body[:300]
    assert answer.json()["code"] == "payload_too_large"
    assert answer.headers.get("connection") == "close", answer.headers
    with pytest.raises(ConnectionError):
        conn.read()


def test_a_chunked_body_over_the_ai_limit_is_413_in_openai_shape(
    conn: Connection, auth: dict[str, str]
) -> None:
    answer = send_chunked(conn, "/v1/chat/completions", auth, 2 * AI_LIMIT)
    assert_openai(answer)
    assert_next_request_works(conn)


def test_a_body_at_the_limit_does_not_stall_other_requests(
    api_server: str, conn: Connection, auth: dict[str, str]
) -> None:
    # The guard parses every JSON body on the event loop: its work on the largest body
    # allowed (here mostly whitespace, which JSON allows anywhere between tokens) must
    # stay short, or one request holds up every other one on the process.
    body = padded({"model": "deepseek-chat", "messages": []}, AI_LIMIT)
    headers = {**auth, "Content-Type": "application/json"}
    sent, answered = threading.Event(), threading.Event()

    def big() -> None:
        conn.sock.sendall(
            conn.head("POST", "/v1/chat/completions", {**headers, "Content-Length": str(len(body))})
            + body
        )
        sent.set()
        conn.read()
        answered.set()

    sender = threading.Thread(target=big)
    sender.start()
    assert sent.wait(30)
    other = Connection(api_server)
    slowest = 0.0
    try:
        while not answered.is_set():
            started = time.monotonic()
            assert other.request("GET", "/healthz").status == 200
            slowest = max(slowest, time.monotonic() - started)
    finally:
        other.close()
        sender.join(30)
    assert slowest < 1.0, (
        f"GET /healthz took {slowest:.2f} s while a {len(body)}-byte body was checked"
    )
