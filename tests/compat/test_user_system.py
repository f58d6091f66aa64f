"""Document 003 (the user system) as its client uses it: `/api/v1/auth/register`,
the OAuth2 password-form login, refresh with the token in the query, `/api/v1/users/me`
and `/api/v1/users/{id}` (self or superuser)."""

from __future__ import annotations

import uuid

import httpx

from core.security import password_hasher

PASSWORD = "password123"
USER_FIELDS = {
    "email",
    "username",
    "full_name",
    "bio",
    "id",
    "is_active",
    "is_superuser",
    "created_at",
    "updated_at",
    "avatar_url",
}
TOKEN_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _register(client: httpx.AsyncClient, **fields: str) -> dict:
    body = {"email": f"u-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD, **fields}
    answer = await client.post("/api/v1/auth/register", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def _login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict:
    # OAuth2PasswordRequestForm: the email goes in `username`.
    answer = await client.post("/api/v1/auth/login", data={"username": email, "password": password})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_register_answers_the_user(client: httpx.AsyncClient) -> None:
    user = await _register(client, username="testuser", full_name="Test User", bio="Hi.")
    assert USER_FIELDS <= user.keys()
    assert uuid.UUID(user["id"])  # ids stay UUIDs
    assert user["username"] == "testuser" and user["full_name"] == "Test User"
    assert user["bio"] == "Hi." and user["avatar_url"] is None
    assert user["is_active"] is True and user["is_superuser"] is False
    assert user["created_at"] and user["updated_at"]

    again = await client.post(
        "/api/v1/auth/register",
        json={"email": user["email"], "username": "other", "password": PASSWORD},
    )
    assert again.status_code == 409
    assert again.json()["code"] == "email_taken"
    taken = await client.post(
        "/api/v1/auth/register",
        json={"email": "fresh@example.com", "username": "TESTUSER", "password": PASSWORD},
    )
    assert taken.status_code == 409 and taken.json()["code"] == "username_taken"
    short = await client.post(
        "/api/v1/auth/register",
        json={"email": "short@example.com", "username": "shorty", "password": "1234567"},
    )
    assert short.status_code == 422 and short.json()["code"] == "validation_error"


async def test_form_login_then_profile(client: httpx.AsyncClient) -> None:
    registered = await _register(client, username="formuser")
    token = await _login(client, registered["email"])
    assert TOKEN_FIELDS <= token.keys() and token["token_type"] == "bearer"
    assert token["expires_in"] > 0

    wrong = await client.post(
        "/api/v1/auth/login", data={"username": registered["email"], "password": "nope-nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials"

    me = await client.get("/api/v1/users/me", headers=_bearer(token["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == registered["id"] and USER_FIELDS <= me.json().keys()

    changed = await client.put(
        "/api/v1/users/me",
        json={
            "full_name": "New Name",
            "bio": "Builds things.",
            "avatar_url": "https://example.com/a.png",
        },
        headers=_bearer(token["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["full_name"], body["bio"], body["avatar_url"]) == (
        "New Name",
        "Builds things.",
        "https://example.com/a.png",
    )
    assert body["username"] == "formuser"
    again = (await client.get("/api/v1/users/me", headers=_bearer(token["access_token"]))).json()
    assert again["bio"] == "Builds things."

    anonymous = await client.get("/api/v1/users/me")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "token_invalid"


async def test_refresh_with_the_token_in_the_query(client: httpx.AsyncClient) -> None:
    registered = await _register(client, username="refresher")
    token = await _login(client, registered["email"])
    refreshed = await client.post(
        "/api/v1/auth/refresh", params={"refresh_token": token["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    pair = refreshed.json()
    assert TOKEN_FIELDS <= pair.keys() and pair["refresh_token"] != token["refresh_token"]
    me = await client.get("/api/v1/users/me", headers=_bearer(pair["access_token"]))
    assert me.status_code == 200

    # Rotated: the old refresh token is dead, and its reuse ends the session.
    reused = await client.post(
        "/api/v1/auth/refresh", params={"refresh_token": token["refresh_token"]}
    )
    assert reused.status_code == 401 and reused.json()["code"] == "token_invalid"
    ended = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert ended.status_code == 401

    missing = await client.post("/api/v1/auth/refresh")
    assert missing.status_code == 422 and missing.json()["code"] == "validation_error"
    assert isinstance(missing.json()["detail"], list)


async def test_refresh_with_the_token_in_the_body(client: httpx.AsyncClient) -> None:
    registered = await _register(client, username="bodyrefresh")
    token = await _login(client, registered["email"])
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": token["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text


async def test_a_user_by_id_is_self_or_superuser_only(client: httpx.AsyncClient, make_user) -> None:
    me, other = make_user(), make_user()
    own = await client.get(f"/api/v1/users/{me.id}", headers=me.headers)
    assert own.status_code == 200 and own.json()["id"] == str(me.id)

    # Another account's id is not confirmed to exist: 404, as for an unknown id.
    hidden = await client.get(f"/api/v1/users/{other.id}", headers=me.headers)
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    unknown = await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=me.headers)
    assert unknown.json() == hidden.json()

    admin = make_user(is_superuser=True, password_hash=password_hasher.hash(PASSWORD))
    seen = await client.get(f"/api/v1/users/{other.id}", headers=admin.headers)
    assert seen.status_code == 200 and seen.json()["email"] == other.email
    assert seen.json()["is_superuser"] is False
    mine = await client.get("/api/v1/users/me", headers=admin.headers)
    assert mine.json()["is_superuser"] is True
    gone = await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=admin.headers)
    assert gone.status_code == 404

    bad = await client.get("/api/v1/users/42", headers=me.headers)
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
