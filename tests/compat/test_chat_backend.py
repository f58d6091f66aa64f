"""The chat-backend document's client (shared/seeds/002-chat-backend.md) against the
running stack: its paths, its bodies, the fields it reads."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import websockets
from sqlalchemy import update

from core.db import worker_session
from models import AuthSession
from tests.fakes.openai_protocol import expected_reply

PASSWORD = "correct horse battery"
API_KEY = "sk-own-endpoint-secret-7f3a9c"


async def register(client: httpx.AsyncClient, username: str, email: str) -> dict:
    answer = await client.post(
        "/auth/register", json={"username": username, "email": email, "password": PASSWORD}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/login", json={"email": email, "password": password})


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def sign_in_long_ago(user_id: str) -> None:
    """Every session of the user opened 11 minutes ago: past the 10-minute window."""
    with worker_session() as session:
        session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == uuid.UUID(user_id))
            .values(created_at=datetime.now(UTC) - timedelta(minutes=11))
        )


async def test_register_login_me_logout(client: httpx.AsyncClient) -> None:
    pair = await register(client, "lin", "lin@example.com")
    assert pair["token_type"] == "bearer" and pair["refresh_token"]
    assert (await register_conflict(client, "lin2", "LIN@example.com")) == "email_taken"
    assert (await register_conflict(client, "LIN", "lin2@example.com")) == "username_taken"

    signed_in = await login(client, "lin@example.com")
    assert signed_in.status_code == 200, signed_in.text
    wrong = await login(client, "lin@example.com", "not the password")
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials"

    me = await client.get("/auth/me", headers=bearer(signed_in.json()))
    assert me.status_code == 200
    assert {k: me.json()[k] for k in ("id", "username", "email")} == {
        "id": pair["user"]["id"],
        "username": "lin",
        "email": "lin@example.com",
    }
    assert (await client.get("/auth/me")).json()["code"] == "token_invalid"

    out = await client.post("/auth/logout", headers=bearer(signed_in.json()))
    assert out.status_code == 200 and out.json()["message"]
    ended = await client.get("/auth/me", headers=bearer(signed_in.json()))
    assert ended.status_code == 401 and ended.json()["code"] == "token_invalid"
    # Only that session ended.
    assert (await client.get("/auth/me", headers=bearer(pair))).status_code == 200


async def register_conflict(client: httpx.AsyncClient, username: str, email: str) -> str:
    answer = await client.post(
        "/auth/register", json={"username": username, "email": email, "password": PASSWORD}
    )
    assert answer.status_code == 409, answer.text
    return answer.json()["code"]


async def test_username_change_follows_the_username_rules(client: httpx.AsyncClient) -> None:
    pair = await register(client, "mei", "mei@example.com")
    await register(client, "taken_name", "taken@example.com")
    changed = await client.post(
        "/auth/me/username", json={"username": "mei_2"}, headers=bearer(pair)
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["username"] == "mei_2"
    assert (await client.get("/auth/me", headers=bearer(pair))).json()["username"] == "mei_2"

    taken = await client.post(
        "/auth/me/username", json={"username": "TAKEN_NAME"}, headers=bearer(pair)
    )
    assert taken.status_code == 409 and taken.json()["code"] == "username_taken"
    for refused in ({"username": "a b"}, {"username": "x"}, {}):
        answer = await client.post("/auth/me/username", json=refused, headers=bearer(pair))
        assert answer.status_code == 422, refused
        assert answer.json()["code"] == "validation_error"


async def test_email_and_password_changes_within_ten_minutes_of_sign_in(
    client: httpx.AsyncClient,
) -> None:
    pair = await register(client, "ana", "ana@example.com")
    other_device = (await login(client, "ana@example.com")).json()

    email = await client.post(
        "/auth/me/email", json={"email": "Ana.New@example.com"}, headers=bearer(pair)
    )
    assert email.status_code == 200, email.text
    assert email.json()["email"] == "ana.new@example.com"

    password = await client.post(
        "/auth/me/password", json={"password": "a new long password"}, headers=bearer(pair)
    )
    assert password.status_code == 200, password.text
    assert password.json()["message"]
    assert (await login(client, "ana.new@example.com")).status_code == 401
    assert (await login(client, "ana.new@example.com", "a new long password")).status_code == 200
    # Every other session ends with a password change; this one goes on.
    assert (await client.get("/auth/me", headers=bearer(other_device))).status_code == 401
    assert (await client.get("/auth/me", headers=bearer(pair))).status_code == 200

    await register(client, "someone", "someone@example.com")
    taken = await client.post(
        "/auth/me/email", json={"email": "someone@example.com"}, headers=bearer(pair)
    )
    assert taken.status_code == 409 and taken.json()["code"] == "email_taken"
    short = await client.post("/auth/me/password", json={"password": "short"}, headers=bearer(pair))
    assert short.status_code == 422


async def test_email_and_password_changes_from_an_old_session_need_the_password(
    client: httpx.AsyncClient,
) -> None:
    pair = await register(client, "bora", "bo@example.com")
    sign_in_long_ago(pair["user"]["id"])

    for path, body in (
        ("/auth/me/email", {"email": "bo2@example.com"}),
        ("/auth/me/password", {"password": "another long password"}),
    ):
        refused = await client.post(path, json=body, headers=bearer(pair))
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "reauthentication_required"
        wrong = await client.post(
            path, json={**body, "current_password": "not it at all"}, headers=bearer(pair)
        )
        assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials"
    me = (await client.get("/auth/me", headers=bearer(pair))).json()
    assert me["email"] == "bo@example.com"
    assert (await login(client, "bo@example.com")).status_code == 200

    email = await client.post(
        "/auth/me/email",
        json={"email": "bo2@example.com", "current_password": PASSWORD},
        headers=bearer(pair),
    )
    assert email.status_code == 200 and email.json()["email"] == "bo2@example.com"
    password = await client.post(
        "/auth/me/password",
        json={"password": "another long password", "current_password": PASSWORD},
        headers=bearer(pair),
    )
    assert password.status_code == 200, password.text
    assert (await login(client, "bo2@example.com", "another long password")).status_code == 200

    # Signing in again opens a new session: the window starts over.
    fresh = (await login(client, "bo2@example.com", "another long password")).json()
    again = await client.post(
        "/auth/me/email", json={"email": "bo3@example.com"}, headers=bearer(fresh)
    )
    assert again.status_code == 200 and again.json()["email"] == "bo3@example.com"


async def test_model_configs_never_return_the_key(client: httpx.AsyncClient) -> None:
    pair = await register(client, "kai", "kai@example.com")
    created = await client.post(
        "/auth/config/create",
        json={"model_url": "https://1.1.1.1/v1/", "model_name": "my-llama", "api_key": API_KEY},
        headers=bearer(pair),
    )
    assert created.status_code == 201, created.text
    config = created.json()
    assert config["model_url"] == "https://1.1.1.1/v1"
    assert config["model_name"] == "my-llama"
    assert config["api_key_hint"] == API_KEY[-4:]
    assert "api_key" not in config and API_KEY not in created.text

    listed = await client.get("/auth/config", headers=bearer(pair))
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()] == [config["id"]]
    assert API_KEY not in listed.text

    renamed = await client.post(
        f"/auth/config/{config['id']}/update",
        json={"model_name": "my-llama-2"},
        headers=bearer(pair),
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["model_name"] == "my-llama-2"
    assert renamed.json()["api_key_hint"] == API_KEY[-4:]
    rekeyed = await client.post(
        f"/auth/config/{config['id']}/update",
        json={"model_url": "https://8.8.8.8/v1", "model_name": "m", "api_key": "sk-other-key-0042"},
        headers=bearer(pair),
    )
    assert rekeyed.status_code == 200, rekeyed.text
    assert rekeyed.json()["model_url"] == "https://8.8.8.8/v1"
    assert rekeyed.json()["api_key_hint"] == "0042" and "sk-other-key" not in rekeyed.text

    for body, path in (
        ({"model_url": "http://127.0.0.1:8080/v1", "model_name": "m", "api_key": "k"}, "create"),
        ({"model_url": "http://169.254.169.254/"}, f"{config['id']}/update"),
    ):
        unsafe = await client.post(f"/auth/config/{path}", json=body, headers=bearer(pair))
        assert unsafe.status_code == 422, unsafe.text
        assert unsafe.json()["detail"][0]["loc"] == ["body", "model_url"]

    stranger = await register(client, "stranger", "stranger@example.com")
    hidden = await client.post(
        f"/auth/config/{config['id']}/update", json={"model_name": "x"}, headers=bearer(stranger)
    )
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    assert (await client.get("/auth/config", headers=bearer(stranger))).json() == []


async def test_conversations_create_list_get_delete(client: httpx.AsyncClient) -> None:
    pair = await register(client, "ola", "ola@example.com")
    untitled = await client.post("/conversations/create", headers=bearer(pair))
    assert untitled.status_code == 201, untitled.text
    titled = await client.post(
        "/conversations/create", json={"title": "Trip plans"}, headers=bearer(pair)
    )
    assert titled.status_code == 201 and titled.json()["title"] == "Trip plans"

    page = await client.get("/conversations", params={"limit": 1}, headers=bearer(pair))
    assert page.status_code == 200
    assert page.json()["total"] == 2 and len(page.json()["items"]) == 1
    assert page.json()["items"][0]["id"] == titled.json()["id"]
    too_many = await client.get("/conversations", params={"limit": 101}, headers=bearer(pair))
    assert too_many.status_code == 422

    history = await client.get(f"/conversations/{titled.json()['id']}", headers=bearer(pair))
    assert history.status_code == 200
    assert history.json()["messages"] == [] and history.json()["has_more"] is False

    stranger = await register(client, "nosy", "nosy@example.com")
    for path in (f"/conversations/{titled.json()['id']}",):
        assert (await client.get(path, headers=bearer(stranger))).status_code == 404
    assert (
        await client.post(f"/conversations/{titled.json()['id']}/delete", headers=bearer(stranger))
    ).status_code == 404

    deleted = await client.post(
        f"/conversations/{titled.json()['id']}/delete", headers=bearer(pair)
    )
    assert deleted.status_code == 200 and deleted.json()["message"]
    gone = await client.get(f"/conversations/{titled.json()['id']}", headers=bearer(pair))
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"
    assert (await client.get("/conversations", headers=bearer(pair))).json()["total"] == 1


@pytest.mark.usefixtures("celery_worker")
async def test_chat_and_messages_answer_with_the_reply(client: httpx.AsyncClient) -> None:
    pair = await register(client, "chen", "chen@example.com")
    conversation_id = (await client.post("/conversations/create", headers=bearer(pair))).json()[
        "id"
    ]

    for route, content in (("chat", "[[tag=cb-chat tokens=6]]"), ("messages", "[[tag=cb-msg]]")):
        answer = await client.post(
            f"/conversations/{conversation_id}/{route}",
            json={"content": content},
            headers=bearer(pair),
        )
        assert answer.status_code == 200, answer.text
        reply = answer.json()
        assert reply["message"]["role"] == "assistant"
        assert reply["message"]["content"] == expected_reply(content)
        assert reply["usage"]["completion_tokens"] > 0 and reply["generation_id"]

    history = await client.get(
        f"/conversations/{conversation_id}", params={"limit": 3}, headers=bearer(pair)
    )
    messages = history.json()["messages"]
    assert [m["role"] for m in messages] == ["assistant", "user", "assistant"]
    assert messages[-1]["content"] == expected_reply("[[tag=cb-msg]]")
    assert history.json()["has_more"] is True
    older = await client.get(
        f"/conversations/{conversation_id}",
        params={"before_id": messages[0]["id"]},
        headers=bearer(pair),
    )
    assert [m["content"] for m in older.json()["messages"]] == ["[[tag=cb-chat tokens=6]]"]

    empty = await client.post(
        f"/conversations/{conversation_id}/messages", json={"content": ""}, headers=bearer(pair)
    )
    assert empty.status_code == 422


@pytest.mark.usefixtures("celery_worker")
async def test_websocket_streams_a_reply(client: httpx.AsyncClient, api_server: str) -> None:
    pair = await register(client, "dana", "dana@example.com")
    conversation_id = (await client.post("/conversations/create", headers=bearer(pair))).json()[
        "id"
    ]
    base = api_server.replace("http", "ws")
    url = f"{base}/conversations/ws/{conversation_id}?token={pair['access_token']}"
    async with websockets.connect(url) as socket:
        content = "[[tag=cb-ws tokens=9]]"
        await socket.send(json.dumps({"type": "chat", "content": content}))
        events = []
        while not events or events[-1]["type"] not in ("done", "error", "cancelled"):
            events.append(json.loads(await asyncio.wait_for(socket.recv(), 30)))
    assert events[0]["type"] == "start" and events[-1]["type"] == "done"
    text = "".join(e["content"] for e in events if e["type"] == "delta")
    assert text == expected_reply(content) == events[-1]["message"]["content"]

    stranger = await register(client, "eve", "eve@example.com")
    url = f"{base}/conversations/ws/{conversation_id}?token={stranger['access_token']}"
    async with websockets.connect(url) as socket:
        assert json.loads(await socket.recv())["code"] == "not_found"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_routes_are_documented_under_compatibility(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    ours = {
        path: operations
        for path, operations in schema["paths"].items()
        if path.startswith(("/auth", "/conversations"))
    }
    assert len(ours) == 16
    for operations in ours.values():
        for operation in operations.values():
            assert operation["tags"] == ["compatibility"]
            assert operation["operationId"].startswith("chat-backend-")


async def test_dot_segments_under_the_prefixes_are_unknown_paths(client: httpx.AsyncClient) -> None:
    # `..%2F` decodes to a path that climbs back to the console's root.
    for path in ("/conversations/..%2F", "/auth/me/..%2F", "/conversations/x/"):
        answer = await client.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["code"] == "not_found"
