"""Password sign-up and sign-in, token rotation with reuse detection, logout, token checks,
brute-force limits and input validation, against the running API."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
from sqlalchemy import func, select

from core.db import worker_session
from core.security import password_hasher
from models import AuthSession, User

PASSWORD = "correct horse battery"


async def register(client: httpx.AsyncClient, email: str, **extra) -> httpx.Response:
    return await client.post(
        "/v1/auth/register", json={"email": email, "password": PASSWORD, **extra}
    )


def assert_envelope(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"detail", "code"}
    assert body["code"] == code


async def test_session_lifecycle_from_register_to_logout(client: httpx.AsyncClient) -> None:
    registered = await register(client, "Ada@Example.COM", full_name="Ada Lovelace")
    assert registered.status_code == 201, registered.text
    pair = registered.json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 3600
    assert pair["user"]["email"] == "ada@example.com"
    assert pair["user"]["username"] == "ada"
    assert pair["user"]["plan"] == "free"

    # Email is case-insensitive at login; the JSON body and the OAuth2 form both work.
    login = await client.post(
        "/v1/auth/login", json={"email": "ADA@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    form_login = await client.post(
        "/v1/auth/login", data={"username": "ada@example.com", "password": PASSWORD}
    )
    assert form_login.status_code == 200, form_login.text

    first = login.json()
    auth = {"Authorization": f"Bearer {first['access_token']}"}
    profile = await client.get("/v1/user/profile", headers=auth)
    assert profile.json()["id"] == pair["user"]["id"]

    rotated = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    again = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert again.status_code == 200
    third = again.json()

    # Presenting the already-rotated token again is theft: the whole session ends.
    reuse = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_envelope(reuse, 401, "token_invalid")
    dead_refresh = await client.post(
        "/v1/auth/refresh", json={"refresh_token": third["refresh_token"]}
    )
    assert_envelope(dead_refresh, 401, "token_invalid")
    dead_access = await client.get(
        "/v1/user/profile", headers={"Authorization": f"Bearer {third['access_token']}"}
    )
    assert_envelope(dead_access, 401, "token_invalid")
    with worker_session() as session:
        reasons = session.scalars(
            select(AuthSession.revoked_reason).where(
                AuthSession.user_id == uuid.UUID(pair["user"]["id"])
            )
        ).all()
    assert sorted(r or "live" for r in reasons) == ["live", "live", "refresh_reuse"]

    # Logout ends its own session at once; the other login session keeps working.
    other = {"Authorization": f"Bearer {form_login.json()['access_token']}"}
    assert (await client.post("/v1/auth/logout", headers=other)).status_code == 204
    assert_envelope(await client.get("/v1/user/profile", headers=other), 401, "token_invalid")
    assert_envelope(
        await client.post(
            "/v1/auth/refresh", json={"refresh_token": form_login.json()["refresh_token"]}
        ),
        401,
        "token_invalid",
    )
    survivor = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.get("/v1/user/profile", headers=survivor)).status_code == 200


async def test_concurrent_refreshes_with_one_token_cannot_fork_the_session(
    client: httpx.AsyncClient,
) -> None:
    pair = (await register(client, "racer@example.com")).json()
    answers = await asyncio.gather(
        *(
            client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
            for _ in range(4)
        )
    )
    winners = [a for a in answers if a.status_code == 200]
    assert len(winners) <= 1
    assert all(a.status_code == 401 for a in answers if a.status_code != 200)


def _forge(claims: dict, key: str = "test-secret-key-that-is-long-enough-for-hs256-0123456789"):
    return jwt.encode(claims, key, algorithm="HS256")


async def test_bad_tokens_are_refused_with_the_envelope(client: httpx.AsyncClient) -> None:
    pair = (await register(client, "tokens@example.com")).json()
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    now = int(time.time())

    expired = _forge({**claims, "iat": now - 7200, "exp": now - 3600})
    wrong_key = _forge(claims, key="another-secret-key-that-is-long-enough-for-hs256-xx")
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(claims).encode()).decode()
    alg_none = f"{header}.{payload}."
    no_typ = _forge({k: v for k, v in claims.items() if k != "typ"})
    no_sid = _forge({k: v for k, v in claims.items() if k != "sid"})

    cases = {
        "expired": (expired, "token_expired"),
        "wrong signature": (wrong_key, "token_invalid"),
        "alg none": (alg_none, "token_invalid"),
        "refresh as access": (pair["refresh_token"], "token_invalid"),
        "missing typ": (no_typ, "token_invalid"),
        "missing sid": (no_sid, "token_invalid"),
        "garbage": ("not.a.jwt", "token_invalid"),
    }
    for name, (token, code) in cases.items():
        answer = await client.get("/v1/user/profile", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, name
        assert answer.json()["code"] == code, name
        assert answer.headers["www-authenticate"] == "Bearer"
    assert_envelope(await client.get("/v1/user/profile"), 401, "token_invalid")

    # And the other way round: an access token is no refresh token.
    assert_envelope(
        await client.post("/v1/auth/refresh", json={"refresh_token": pair["access_token"]}),
        401,
        "token_invalid",
    )


async def test_login_failures_look_alike_and_are_rate_limited(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "target@example.com")
    wrong = await client.post(
        "/v1/auth/login", json={"email": "target@example.com", "password": "wrong password"}
    )
    unknown = await client.post(
        "/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong password"}
    )
    assert_envelope(wrong, 401, "invalid_credentials")
    assert_envelope(unknown, 401, "invalid_credentials")
    assert wrong.json()["detail"] == unknown.json()["detail"]

    # The default limit is 5 attempts per account per window; one was used above.
    for _ in range(4):
        answer = await client.post(
            "/v1/auth/login", json={"email": "TARGET@example.com", "password": "guess"}
        )
        assert answer.status_code == 401
    blocked = await client.post(
        "/v1/auth/login", json={"email": "target@example.com", "password": PASSWORD}
    )
    assert_envelope(blocked, 429, "rate_limited")
    assert 0 < int(blocked.headers["retry-after"]) <= 900
    # Other accounts are not locked by it.
    await register(client, "bystander@example.com")
    ok = await client.post(
        "/v1/auth/login", json={"email": "bystander@example.com", "password": PASSWORD}
    )
    assert ok.status_code == 200


async def test_concurrent_guesses_cannot_exceed_the_limit(client: httpx.AsyncClient) -> None:
    await register(client, "burst@example.com")
    answers = await asyncio.gather(
        *(
            client.post(
                "/v1/auth/login", json={"email": "burst@example.com", "password": f"guess-{i}"}
            )
            for i in range(12)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(401) == 5
    assert statuses.count(429) == 7


async def test_outdated_password_hash_is_upgraded_on_login(client: httpx.AsyncClient) -> None:
    from argon2 import PasswordHasher
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    weak = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1),))
    old_hash = weak.hash(PASSWORD)
    assert password_hasher.verify_and_update(PASSWORD, old_hash)[1] is not None
    user_id = uuid.uuid4()
    with worker_session() as session:
        session.add(
            User(id=user_id, email="old@example.com", username="oldtimer", password_hash=old_hash)
        )
    login = await client.post(
        "/v1/auth/login", json={"email": "old@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200
    with worker_session() as session:
        new_hash = session.get(User, user_id).password_hash
    assert new_hash != old_hash
    assert not PasswordHasher().check_needs_rehash(new_hash)
    assert password_hasher.verify(PASSWORD, new_hash)


async def test_registration_validation_writes_nothing_half_done(
    client: httpx.AsyncClient,
) -> None:
    first = await register(client, "taken@example.com")
    assert first.status_code == 201
    assert first.json()["user"]["username"] == "taken"

    cases = [
        ({"email": "not-an-email", "password": PASSWORD}, 422, "validation_error"),
        ({"email": "short@example.com", "password": "1234567"}, 422, "validation_error"),
        ({"email": "x" * 320 + "@example.com", "password": PASSWORD}, 422, "validation_error"),
        (
            {"email": "long@example.com", "password": PASSWORD, "full_name": "n" * 201},
            422,
            "validation_error",
        ),
        (
            {"email": "extra@example.com", "password": PASSWORD, "is_superuser": True},
            422,
            "validation_error",
        ),
        ({"email": "TAKEN@example.com", "password": PASSWORD}, 409, "email_taken"),
        (
            {"email": "fresh@example.com", "password": PASSWORD, "username": "TAKEN"},
            409,
            "username_taken",
        ),
    ]
    for body, status, code in cases:
        answer = await client.post("/v1/auth/register", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["code"] == code
        assert "correct horse" not in answer.text
    with worker_session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert session.scalar(select(func.count()).select_from(AuthSession)) == 1

    # Usernames generated from the email never collide.
    second = await register(client, "taken@example.org")
    assert second.status_code == 201
    assert second.json()["user"]["username"].startswith("taken_")

    # A session whose refresh window passed cannot be refreshed.
    pair = first.json()
    with worker_session() as session:
        session.execute(
            AuthSession.__table__.update().values(expires_at=datetime.now(UTC) - timedelta(1))
        )
    assert_envelope(
        await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
        401,
        "token_expired",
    )


async def test_docs_authorize_signs_in_with_the_password_form(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    flow = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]
    assert flow["tokenUrl"] == "/v1/auth/login"
    profile_security = schema["paths"]["/v1/user/profile"]["get"]["security"]
    assert {"OAuth2PasswordBearer": []} in profile_security
    login_body = schema["paths"]["/v1/auth/login"]["post"]["requestBody"]["content"]
    assert set(login_body) == {"application/json", "application/x-www-form-urlencoded"}

    # What Swagger UI's Authorize dialog sends, then what it calls with the answer.
    await register(client, "swagger@example.com")
    token = await client.post(
        "/v1/auth/login",
        data={"grant_type": "password", "username": "swagger@example.com", "password": PASSWORD},
    )
    assert token.status_code == 200, token.text
    profile = await client.get(
        "/v1/user/profile", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    )
    assert profile.json()["email"] == "swagger@example.com"
