"""Sign in with Apple against a fake Apple JWKS that signs with keys made by the tests."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import jwt
from sqlalchemy import select

from core.apple import REFETCH_COOLDOWN_SECONDS
from core.db import worker_session
from models import OAuthIdentity, User
from tests.fakes.apple import FakeApple


async def apple_sign_in(client: httpx.AsyncClient, token: str, **extra) -> httpx.Response:
    return await client.post("/v1/auth/apple", json={"identity_token": token, **extra})


async def test_first_sign_in_creates_the_account_and_later_ones_find_it(
    client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    token = fake_apple.issue("001234.abcdef.0001", nonce=hashlib.sha256(b"n-1").hexdigest())
    first = await apple_sign_in(client, token, full_name="Grace Hopper", nonce="n-1")
    assert first.status_code == 200, first.text
    user = first.json()["user"]
    assert user["email"] == "001234.abcdef.0001@privaterelay.appleid.com"
    assert user["full_name"] == "Grace Hopper"
    me = await client.get(
        "/v1/user/profile", headers={"Authorization": f"Bearer {first.json()['access_token']}"}
    )
    assert me.json()["id"] == user["id"]

    # The relay email may change; the identity is the subject.
    again = await apple_sign_in(
        client, fake_apple.issue("001234.abcdef.0001", email="other@privaterelay.appleid.com")
    )
    assert again.status_code == 200
    assert again.json()["user"]["id"] == user["id"]
    with worker_session() as session:
        identities = session.scalars(select(OAuthIdentity)).all()
    assert [(i.provider, i.subject) for i in identities] == [("apple", "001234.abcdef.0001")]


async def test_links_by_verified_email_only(
    client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    password_user = await client.post(
        "/v1/auth/register", json={"email": "kay@example.com", "password": "long enough pw"}
    )
    owner_id = password_user.json()["user"]["id"]

    unverified = await apple_sign_in(
        client, fake_apple.issue("sub-unverified", email="kay@example.com", email_verified="false")
    )
    assert unverified.status_code == 200
    assert unverified.json()["user"]["id"] != owner_id
    assert unverified.json()["user"]["email"].endswith("@users.invalid")

    verified = await apple_sign_in(
        client, fake_apple.issue("sub-verified", email="KAY@example.com", email_verified=True)
    )
    assert verified.status_code == 200
    assert verified.json()["user"]["id"] == owner_id
    with worker_session() as session:
        assert session.scalar(select(User).where(User.email == "kay@example.com")).id
        assert len(session.scalars(select(User)).all()) == 2


async def test_bad_identity_tokens_are_refused(
    client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    sub = "sub-refused"
    valid = fake_apple.issue(sub)
    header, payload, signature = valid.split(".")
    tampered_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(sub.encode(), b"sub-attacker")
    ).decode()
    unknown_kid = fake_apple.new_key(publish=False)
    now = int(time.time())
    cases = {
        "wrong audience": fake_apple.issue(sub, aud="com.evil.app"),
        "wrong issuer": fake_apple.issue(sub, iss="https://evil.example.com"),
        "expired": fake_apple.issue(sub, iat=now - 7200, exp=now - 3600),
        "unknown key": fake_apple.issue(sub, kid=unknown_kid),
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "no sub": fake_apple.issue(sub, sub=None),
        "HS256 with the public key": jwt.encode(
            {"iss": "https://appleid.apple.com", "aud": "com.example.switchboard", "sub": sub},
            "not-the-apple-key-but-an-hmac-secret-32b",
            algorithm="HS256",
            headers={"kid": fake_apple.published[0]},
        ),
        "garbage": "garbage",
    }
    for name, token in cases.items():
        answer = await apple_sign_in(client, token)
        assert answer.status_code == 401, (name, answer.text)
        assert answer.json()["code"] in ("token_invalid", "token_expired"), name
    nonce_mismatch = await apple_sign_in(client, fake_apple.issue(sub, nonce="abc"), nonce="xyz")
    assert nonce_mismatch.status_code == 401
    with worker_session() as session:
        assert session.scalars(select(User)).all() == []

    # A second audience of APPLE_CLIENT_IDS (another app of ours) is accepted.
    assert (
        await apple_sign_in(client, fake_apple.issue(sub, aud="com.example.other"))
    ).status_code == 200


async def test_rotated_apple_key_is_fetched_on_demand(
    client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    assert (await apple_sign_in(client, fake_apple.issue("sub-rotation"))).status_code == 200
    fetched = fake_apple.jwks_requests
    cached = await apple_sign_in(client, fake_apple.issue("sub-rotation"))
    assert cached.status_code == 200
    assert fake_apple.jwks_requests == fetched

    await asyncio.sleep(REFETCH_COOLDOWN_SECONDS + 0.1)
    new_kid = fake_apple.new_key()
    rotated = await apple_sign_in(client, fake_apple.issue("sub-rotation", kid=new_kid))
    assert rotated.status_code == 200, rotated.text
    assert fake_apple.jwks_requests == fetched + 1
