"""The chat WebSocket against hostile frames and ended sessions (issue 19).

Every refused frame must be answered with an `error` event on a socket that stays
usable, never a dropped connection or a traceback in the API's log; a socket whose
session has ended must stop acting before any provider call.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest
import websockets
from sqlalchemy import func, select

from api.schemas.conversations import ChatRequest
from core.config import settings
from core.db import worker_session
from core.security import ALGORITHM, LEEWAY_SECONDS, password_hasher
from models import Generation, Message
from tests.fakes.openai_protocol import expected_reply
from tests.sse import new_conversation

pytestmark = pytest.mark.usefixtures("celery_worker")

END_EVENTS = ("done", "error", "cancelled")
# The HTTP turn's cap on `content`, read from its schema so the test follows it.
CONTENT_MAX = next(
    m.max_length for m in ChatRequest.model_fields["content"].metadata if hasattr(m, "max_length")
)


def _ws_url(api_server: str, conversation_id: str, token: str | None = None) -> str:
    url = api_server.replace("http", "ws", 1) + f"/v1/conversations/{conversation_id}/ws"
    return f"{url}?token={token}" if token else url


def _api_log(api_server: str) -> Path:
    # Where tests/conftest.py's ServiceProcess writes the API process' output.
    return Path(os.environ["DATA_DIR"]) / f"api-{urlsplit(api_server).port}.log"


async def _next(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 30))


async def _until_end(ws) -> list[dict]:
    events = []
    while True:
        events.append(await _next(ws))
        if events[-1]["type"] in END_EVENTS:
            return events


async def _assert_turn_streams(ws, tag: str) -> None:
    content = f"[[tag={tag} tokens=4]]"
    await ws.send(json.dumps({"type": "chat", "content": content}))
    events = await _until_end(ws)
    assert events[0]["type"] == "start", events
    assert events[-1]["type"] == "done", events
    assert "".join(e["content"] for e in events if e["type"] == "delta") == expected_reply(content)


async def _assert_closed(ws, code: int) -> None:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def _user_messages(conversation_id: str) -> int:
    with worker_session() as session:
        return session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.conversation_id == uuid.UUID(conversation_id), Message.role == "user")
        )


def _messages_tagged(conversation_id: str, tag: str) -> int:
    with worker_session() as session:
        return session.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.conversation_id == uuid.UUID(conversation_id),
                Message.content.contains(f"tag={tag}"),
            )
        )


async def _assert_never_generated(fake_llm, conversation_id: str, tag: str) -> None:
    # The message rows are written before a generation is queued, so their absence is
    # decisive; the pause gives a wrongly queued job time to reach the fake upstream too.
    assert _messages_tagged(conversation_id, tag) == 0
    await asyncio.sleep(1.0)
    assert fake_llm.requests_tagged(tag) == []


CHAT = '{"type": "chat", "content": "hello"'
HOSTILE_FRAMES = [
    pytest.param(b'{"type": "chat", "content": "hi"}', "binary_frame", id="binary"),
    pytest.param('{"type": "chat", "content": ', "json_invalid", id="invalid-json"),
    pytest.param(CHAT + ', "n": ' + "9" * 5000 + "}", "int_range", id="5000-digits"),
    pytest.param("[" * 100_000 + "]" * 100_000, "too_deep", id="100000-deep"),
    pytest.param('{"type": "chat", "content": "a\\u0000b"}', "string_nul", id="nul"),
    pytest.param('{"type": "chat", "content": "\\ud800"}', "string_surrogate", id="surrogate"),
    pytest.param(CHAT + ', "t": NaN}', "finite_number", id="nan"),
    pytest.param(CHAT + ', "t": 1e999}', "finite_number", id="1e999"),
    pytest.param(
        json.dumps({"type": "chat", "content": "x" * (CONTENT_MAX + 1)}),
        "string_too_long",
        id="oversize-content",
    ),
    pytest.param('{"type": "dance"}', "union_tag_invalid", id="unknown-type"),
    pytest.param('{"content": "hi"}', "union_tag_not_found", id="no-type"),
    pytest.param('{"type": "chat"}', "missing", id="no-content"),
    pytest.param('{"type": "chat", "content": 5}', "string_type", id="content-not-text"),
    pytest.param('["chat", "hi"]', "model_attributes_type", id="not-an-object"),
]


@pytest.mark.parametrize(("frame", "issue_type"), HOSTILE_FRAMES)
async def test_refused_frame_answers_error_and_socket_keeps_working(
    client, api_server, make_user, frame, issue_type
):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    log = _api_log(api_server)
    log_start = log.stat().st_size
    tag = f"hostile{uuid.uuid4().hex[:8]}"
    async with websockets.connect(_ws_url(api_server, conversation_id, user.access_token)) as ws:
        await ws.send(frame)
        error = await _next(ws)
        assert error["type"] == "error" and error["code"] == "validation_error", error
        assert isinstance(error["message"], str) and error["message"]
        assert [item["type"] for item in error["detail"]][:1] == [issue_type], error
        assert all(item["loc"][0] == "message" for item in error["detail"]), error

        await _assert_turn_streams(ws, tag)
    assert _user_messages(conversation_id) == 1  # the valid turn's: nothing refused was stored
    with open(log, "rb") as output:
        output.seek(log_start)
        assert b"Traceback" not in output.read()


async def test_frame_over_body_limit_is_refused_unparsed(client, api_server, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    frame = json.dumps({"type": "chat", "content": "x" * (2 * 1024 * 1024)})
    assert len(frame) > settings.max_body_bytes
    async with websockets.connect(_ws_url(api_server, conversation_id, user.access_token)) as ws:
        await ws.send(frame)
        error = await _next(ws)
        assert error["type"] == "error" and error["code"] == "payload_too_large", error
        assert "detail" not in error
        await _assert_turn_streams(ws, "toolarge")


async def test_refused_field_is_named_like_an_http_422(client, api_server, make_user):
    """The socket answers a refused field with the same item the HTTP turn's 422 lists."""
    user = make_user()
    conversation_id = await new_conversation(client, user)
    body = {"content": "x" * (CONTENT_MAX + 1)}
    http = await client.post(
        f"/v1/conversations/{conversation_id}/chat", json=body, headers=user.headers
    )
    assert http.status_code == 422
    async with websockets.connect(_ws_url(api_server, conversation_id, user.access_token)) as ws:
        await ws.send(json.dumps({"type": "chat", **body}))
        error = await _next(ws)
    (http_item,) = http.json()["detail"]
    (socket_item,) = error["detail"]
    assert socket_item["loc"] == ["message", "chat", "content"]
    assert http_item["loc"] == ["body", "content"]
    assert {k: v for k, v in socket_item.items() if k != "loc"} == {
        k: v for k, v in http_item.items() if k != "loc"
    }


async def _password_user(make_user, client, password: str):
    user = make_user(password_hash=password_hasher.hash(password))
    login = await client.post("/v1/auth/login", json={"email": user.email, "password": password})
    assert login.status_code == 200, login.text
    return user, {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.mark.parametrize("message", ["chat", "cancel"])
async def test_logged_out_session_stops_the_socket(
    client, api_server, make_user, fake_llm, message
):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    tag = f"loggedout{uuid.uuid4().hex[:8]}"
    async with websockets.connect(_ws_url(api_server, conversation_id, user.access_token)) as ws:
        await _assert_turn_streams(ws, f"before{tag}")
        logout = await client.post("/v1/auth/logout", headers=user.headers)
        assert logout.status_code == 204
        if message == "chat":
            await ws.send(json.dumps({"type": "chat", "content": f"[[tag={tag}]]"}))
        else:
            await ws.send(json.dumps({"type": "cancel"}))
        error = await _next(ws)
        assert error["type"] == "error" and error["code"] == "token_invalid", error
        await _assert_closed(ws, 4401)
    await _assert_never_generated(fake_llm, conversation_id, tag)


async def test_cancel_after_logout_does_not_cancel(client, api_server, make_user):
    """An ended session's socket cannot act on the generation it started either."""
    user = make_user()
    conversation_id = await new_conversation(client, user)
    # Long enough (6 s) to be still running when the cancel comes, on a loaded machine too.
    content = "[[tag=keepgoing tokens=60 delay=0.1]]"
    async with websockets.connect(_ws_url(api_server, conversation_id, user.access_token)) as ws:
        await ws.send(json.dumps({"type": "chat", "content": content}))
        start = await _next(ws)
        assert start["type"] == "start", start
        assert (await client.post("/v1/auth/logout", headers=user.headers)).status_code == 204
        await ws.send(json.dumps({"type": "cancel"}))
        # Deltas of the running reply may come first; the refusal closes the socket.
        while (event := await _next(ws))["type"] != "error":
            assert event["type"] == "delta", event
        assert event["code"] == "token_invalid", event
        await _assert_closed(ws, 4401)
    assert await _generation_status(conversation_id) == "done"


async def _generation_status(conversation_id: str) -> str | None:
    """The conversation's only generation's status once it has ended."""
    status = None
    for _ in range(150):
        with worker_session() as session:
            status = session.scalar(
                select(Generation.status).where(
                    Generation.conversation_id == uuid.UUID(conversation_id)
                )
            )
        if status in ("done", "failed", "cancelled"):
            break
        await asyncio.sleep(0.1)
    return status


async def test_password_change_elsewhere_stops_the_socket(client, api_server, make_user, fake_llm):
    user, other_headers = await _password_user(make_user, client, "correct horse battery")
    conversation_id = await new_conversation(client, user)
    tag = f"pwchanged{uuid.uuid4().hex[:8]}"
    other_token = other_headers["Authorization"].split()[1]
    async with (
        websockets.connect(_ws_url(api_server, conversation_id, user.access_token)) as ended,
        websockets.connect(_ws_url(api_server, conversation_id, other_token)) as kept,
    ):
        await _assert_turn_streams(ended, f"before{tag}")
        changed = await client.post(
            "/v1/user/password",
            json={"current_password": "correct horse battery", "new_password": "staple 42 42 42"},
            headers=other_headers,
        )
        assert changed.status_code == 204, changed.text
        await ended.send(json.dumps({"type": "chat", "content": f"[[tag={tag}]]"}))
        error = await _next(ended)
        assert error["type"] == "error" and error["code"] == "token_invalid", error
        await _assert_closed(ended, 4401)
        # The session that changed the password is the one kept.
        await _assert_turn_streams(kept, f"kept{tag}")
    await _assert_never_generated(fake_llm, conversation_id, tag)


def _access_token(user, expires_at: datetime) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "sid": str(user.session_id),
        "typ": "access",
        "iat": now - timedelta(hours=1),
        "exp": expires_at,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


async def test_expired_token_stops_the_socket(client, api_server, make_user, fake_llm):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    # Past its expiry but inside the leeway for five more seconds: it connects and chats.
    expires_at = datetime.now(UTC) - timedelta(seconds=LEEWAY_SECONDS - 5)
    token = _access_token(user, expires_at)
    tag = f"expired{uuid.uuid4().hex[:8]}"
    async with websockets.connect(_ws_url(api_server, conversation_id, token)) as ws:
        await _assert_turn_streams(ws, f"before{tag}")
        beyond = expires_at + timedelta(seconds=LEEWAY_SECONDS + 1) - datetime.now(UTC)
        await asyncio.sleep(max(beyond.total_seconds(), 0))
        await ws.send(json.dumps({"type": "chat", "content": f"[[tag={tag}]]"}))
        error = await _next(ws)
        assert error["type"] == "error" and error["code"] == "token_expired", error
        await _assert_closed(ws, 4401)
    await _assert_never_generated(fake_llm, conversation_id, tag)


async def test_token_in_authorization_header(client, api_server, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    url = _ws_url(api_server, conversation_id)
    async with websockets.connect(url, additional_headers=user.headers) as ws:
        await _assert_turn_streams(ws, "header")
    bad = {"Authorization": "Bearer not-a-token"}
    async with websockets.connect(url, additional_headers=bad) as ws:
        assert (await _next(ws))["code"] == "token_invalid"
        await _assert_closed(ws, 4401)


async def test_token_in_subprotocol(client, api_server, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    url = _ws_url(api_server, conversation_id)
    async with websockets.connect(url, subprotocols=["bearer", user.access_token]) as ws:
        # Browsers fail a handshake whose answer names no protocol they offered.
        assert ws.subprotocol == "bearer"
        await _assert_turn_streams(ws, "subprotocol")
    async with websockets.connect(url, subprotocols=["bearer", "not-a-token"]) as ws:
        assert ws.subprotocol == "bearer"
        assert (await _next(ws))["code"] == "token_invalid"
        await _assert_closed(ws, 4401)


async def test_no_token_is_refused(client, api_server, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    async with websockets.connect(_ws_url(api_server, conversation_id)) as ws:
        assert (await _next(ws))["code"] == "token_invalid"
        await _assert_closed(ws, 4401)
