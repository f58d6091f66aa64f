"""X-Forwarded-For from a trusted proxy (the tests' 127.0.0.1 is one by default): the client
address it yields is a real IP or the peer's, never the header's text, and it is what a
session stores."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from core.db import worker_session
from models import AuthSession

PASSWORD = "correct horse battery"
PEER = "127.0.0.1"


def _stored_addresses(user_id: str) -> list[str | None]:
    with worker_session() as session:
        return list(
            session.scalars(
                select(AuthSession.ip_address)
                .where(AuthSession.user_id == uuid.UUID(user_id))
                .order_by(AuthSession.created_at)
            )
        )


@pytest.mark.parametrize(
    ("forwarded_for", "stored"),
    [
        ("x" * 300, PEER),
        ("not-an-ip", PEER),
        ("203.0.113.7, " + "9" * 300, PEER),
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:51234", "203.0.113.7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        # Left of our proxy's entry is whatever the client sent: the nearest untrusted hop wins.
        ("198.51.100.1, 203.0.113.7", "203.0.113.7"),
        ("203.0.113.7, 127.0.0.1", "203.0.113.7"),
    ],
    ids=[
        "300-chars",
        "not-an-ip",
        "garbage-hop",
        "ip",
        "ip-port",
        "ipv6-port",
        "ipv4-mapped",
        "spoofed-left",
        "through-trusted",
    ],
)
async def test_sessions_store_the_forwarded_address_only_when_it_is_one(
    client: httpx.AsyncClient, forwarded_for: str, stored: str
) -> None:
    headers = {"X-Forwarded-For": forwarded_for}
    email = f"fwd-{uuid.uuid4().hex[:10]}@example.com"
    registered = await client.post(
        "/v1/auth/register", json={"email": email, "password": PASSWORD}, headers=headers
    )
    assert registered.status_code == 201, registered.text
    login = await client.post(
        "/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=headers
    )
    assert login.status_code == 200, login.text

    assert _stored_addresses(registered.json()["user"]["id"]) == [stored, stored]


async def test_without_the_header_the_peer_is_stored(client: httpx.AsyncClient) -> None:
    registered = await client.post(
        "/v1/auth/register", json={"email": "plain@example.com", "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    assert _stored_addresses(registered.json()["user"]["id"]) == [PEER]
