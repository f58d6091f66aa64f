"""Password hashes of the earlier systems (bcrypt as passlib wrote it) sign in through the
running API and are stored again as Argon2id; a wrong password is still refused."""

from __future__ import annotations

import bcrypt
import httpx
import pytest
from sqlalchemy import select

from core.accounts import verify_password
from core.db import worker_session
from models import User

PASSWORD = "correct horse battery staple"


def stored_hash(email: str) -> str | None:
    with worker_session() as session:
        return session.scalar(select(User.password_hash).where(User.email == email))


def passlib_bcrypt(password: str, prefix: bytes = b"2b") -> str:
    # passlib's bcrypt writes the bcrypt library's modular format; cost 12 was its default.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(12, prefix)).decode()


@pytest.mark.parametrize("prefix", [b"2b", b"2a"])
async def test_bcrypt_hash_signs_in_and_becomes_argon2id(
    client: httpx.AsyncClient, make_user, prefix: bytes
) -> None:
    legacy = passlib_bcrypt(PASSWORD, prefix)
    assert legacy.startswith(f"${prefix.decode()}$12$")
    user = make_user(email="legacy@example.com", password_hash=legacy)

    wrong = await client.post(
        "/v1/auth/login", json={"email": user.email, "password": "not the password"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_credentials"
    assert stored_hash(user.email) == legacy

    login = await client.post("/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    upgraded = stored_hash(user.email)
    assert upgraded is not None and upgraded.startswith("$argon2id$")

    # The Argon2id hash signs in the same way, and is not rehashed again.
    again = await client.post("/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert again.status_code == 200
    assert stored_hash(user.email) == upgraded


async def test_long_passwords_are_cut_to_72_bytes_as_passlib_did() -> None:
    long_password = "é" * 50  # 100 bytes in UTF-8
    legacy = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(4)).decode()
    valid, upgraded = await verify_password(long_password, legacy)
    assert valid and upgraded is not None and upgraded.startswith("$argon2id$")
    assert await verify_password("x" * 200, legacy) == (False, None)


async def test_missing_or_unknown_hashes_are_refused_not_errors() -> None:
    assert await verify_password(PASSWORD, None) == (False, None)
    assert await verify_password(PASSWORD, "md5$not-a-hash-we-know") == (False, None)
