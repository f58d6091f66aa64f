"""The edge's own behaviour: routing of unknown paths and methods, what a refusal
shows of the input, and a 500 that leaves the keep-alive connection usable.

The per-field hostile values of every route are in tests/fuzz/test_hostile_input.py.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from api.errors import UnhandledErrors
from tests.conftest import free_port


async def test_unknown_paths_are_404_and_wrong_methods_405(client: httpx.AsyncClient) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        answer = await client.request(method, "/v1/no-such-route")
        assert answer.status_code == 404, method
        assert answer.json() == {"detail": "Not Found", "code": "not_found"}
    for method in ("GET", "HEAD"):
        answer = await client.request(method, "/v1/auth/login")
        assert answer.status_code == 405, method
    assert (await client.get("/v1/auth/login")).json()["code"] == "method_not_allowed"
    # The console still answers what no route matches.
    page = await client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert (await client.get("/style.css")).status_code == 200
    assert (await client.get("/no-such-file.js")).json()["code"] == "not_found"


async def test_a_refusal_shows_a_short_excerpt_of_the_input(client: httpx.AsyncClient) -> None:
    # A valid string of the wrong type: FastAPI's own check refuses it, our answer trims it.
    answer = await client.post("/v1/auth/login", json={"email": "x" * 500_000, "password": 1})
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "validation_error"
    assert isinstance(body["detail"], list) and body["detail"]
    assert len(answer.content) < 2_000
    for item in body["detail"]:
        assert {"loc", "msg", "type"} <= item.keys()


async def test_a_check_of_our_own_answers_a_list(client: httpx.AsyncClient, make_user) -> None:
    user = make_user()
    answer = await client.post(
        "/v1/model-configs",
        json={"base_url": "not a url", "model": "m", "api_key": "k"},
        headers=user.headers,
    )
    assert answer.status_code == 422
    [item] = answer.json()["detail"]
    assert item["loc"][0] == "body" and item["type"] and item["msg"]


async def test_hostile_text_is_named_by_its_field(client: httpx.AsyncClient, make_user) -> None:
    user = make_user()
    answer = await client.put(
        "/v1/user/ai-config",
        content=b'{"system_prompt": "a\\u0000b", "temperature": NaN}',
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422
    locs = [item["loc"] for item in answer.json()["detail"]]
    assert locs == [["body", "system_prompt"], ["body", "temperature"]]

    compat = await client.post(
        "/v1/chat/completions",
        content=b'{"model": "local", "messages": [{"role": "user", "content": "\\ud800"}]}',
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert compat.status_code == 400
    error = compat.json()["error"]
    assert error["code"] == "validation_error" and error["param"] == "messages.0.content"

    query = await client.get("/v1/conversations?offset=%00", headers=user.headers)
    assert query.status_code == 422
    assert query.json()["detail"][0]["loc"] == ["query", "offset"]


def _boom(_request) -> PlainTextResponse:
    raise RuntimeError("a bug")


def _ok(_request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture
def failing_server() -> Iterator[int]:
    """uvicorn serving a route that raises, our middleware placed as api/app.py places it."""
    app = Starlette(
        routes=[Route("/boom", _boom), Route("/ok", _ok)], middleware=[Middleware(UnhandledErrors)]
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def test_a_500_keeps_the_connection(failing_server: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", failing_server, timeout=5)
    # Fail loudly instead of reconnecting if the server closed the socket.
    connection.auto_open = 0
    connection.connect()
    sock: socket.socket | None = connection.sock
    connection.request("GET", "/boom")
    failed = connection.getresponse()
    assert failed.status == 500
    assert b'"internal_error"' in failed.read()
    assert failed.getheader("connection") != "close"
    connection.request("GET", "/ok")
    assert connection.sock is sock
    assert connection.getresponse().read() == b"ok"
    connection.close()
