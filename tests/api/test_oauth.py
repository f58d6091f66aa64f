"""Linux.do OAuth2 sign-in through a fake Linux.do Connect that speaks the real protocol."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select, text

from core.db import worker_session
from models import OAuthIdentity, User
from tests.fakes.linuxdo import FakeLinuxDo, linuxdo_profile

APP_CALLBACK = "https://app.example.com/oauth/linuxdo"


async def consent(client: httpx.AsyncClient, redirect_uri: str = APP_CALLBACK) -> dict[str, str]:
    """Start the flow and let the fake provider's consent page redirect back with a code."""
    started = await client.get(
        "/v1/auth/oauth/linuxdo/authorize", params={"redirect_uri": redirect_uri}
    )
    assert started.status_code == 200, started.text
    body = started.json()
    query = parse_qs(urlsplit(body["authorization_url"]).query)
    assert query["state"] == [body["state"]]
    assert query["redirect_uri"] == [redirect_uri]
    async with httpx.AsyncClient() as browser:
        redirect = await browser.get(body["authorization_url"])
    assert redirect.status_code == 302
    location = urlsplit(redirect.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
    back = parse_qs(location.query)
    return {"code": back["code"][0], "state": back["state"][0]}


async def test_code_flow_creates_then_finds_the_user(
    client: httpx.AsyncClient, fake_linuxdo: FakeLinuxDo
) -> None:
    params = await consent(client)
    signed_in = await client.get("/v1/auth/oauth/linuxdo/callback", params=params)
    assert signed_in.status_code == 200, signed_in.text
    user = signed_in.json()["user"]
    assert user["username"] == "neo4242"
    assert user["full_name"] == "Thomas Anderson"
    assert user["email"] == "neo4242@linux.do.example"
    me = await client.get(
        "/v1/user/profile", headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    )
    assert me.json()["id"] == user["id"]

    # The identity is the immutable id: a renamed account is still the same user.
    fake_linuxdo.profile = linuxdo_profile(username="renamed", email="new@linux.do.example")
    again = await client.get("/v1/auth/oauth/linuxdo/callback", params=await consent(client))
    assert again.status_code == 200
    assert again.json()["user"]["id"] == user["id"]

    with worker_session() as session:
        identity = session.scalars(select(OAuthIdentity)).one()
        assert (identity.provider, identity.subject) == ("linuxdo", "4242")
        # Linux.do's api_key is in every user-info answer; it must be stored nowhere.
        dump = (
            session.execute(
                text(
                    "SELECT row_to_json(u)::text FROM users u UNION ALL "
                    "SELECT row_to_json(o)::text FROM oauth_identities o"
                )
            )
            .scalars()
            .all()
        )
    assert not any("linuxdo-secret-api-key" in row for row in dump)


async def test_links_to_an_existing_account_with_the_same_email(
    client: httpx.AsyncClient, fake_linuxdo: FakeLinuxDo
) -> None:
    existing = await client.post(
        "/v1/auth/register", json={"email": "neo4242@linux.do.example", "password": "long enough"}
    )
    signed_in = await client.get("/v1/auth/oauth/linuxdo/callback", params=await consent(client))
    assert signed_in.status_code == 200
    assert signed_in.json()["user"]["id"] == existing.json()["user"]["id"]


async def test_state_is_single_use_and_cannot_be_forged(
    client: httpx.AsyncClient, fake_linuxdo: FakeLinuxDo
) -> None:
    params = await consent(client)
    forged = await client.get(
        "/v1/auth/oauth/linuxdo/callback", params={**params, "state": "made-up-state"}
    )
    assert forged.status_code == 400
    assert forged.json()["code"] == "invalid_state"

    assert (await client.get("/v1/auth/oauth/linuxdo/callback", params=params)).status_code == 200
    replayed = await client.get("/v1/auth/oauth/linuxdo/callback", params=params)
    assert replayed.status_code == 400
    assert replayed.json() == {
        "detail": "The sign-in state is unknown, expired or already used.",
        "code": "invalid_state",
    }

    unknown = await client.get("/v1/auth/oauth/github/authorize")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"


async def test_provider_failures_and_refused_accounts(
    client: httpx.AsyncClient, fake_linuxdo: FakeLinuxDo
) -> None:
    params = await consent(client)
    fake_linuxdo.fail_token_with = 500
    failed = await client.get("/v1/auth/oauth/linuxdo/callback", params=params)
    assert failed.status_code == 502
    assert failed.json()["code"] == "upstream_error"
    fake_linuxdo.fail_token_with = None

    # A code the provider never issued (or already redeemed) is the caller's error.
    params = await consent(client)
    bad_code = await client.get(
        "/v1/auth/oauth/linuxdo/callback", params={**params, "code": "not-issued"}
    )
    assert bad_code.status_code == 400
    assert bad_code.json()["code"] == "invalid_grant"

    for refused in (linuxdo_profile(active=False), linuxdo_profile(silenced=True)):
        fake_linuxdo.profile = refused
        answer = await client.get("/v1/auth/oauth/linuxdo/callback", params=await consent(client))
        assert answer.status_code == 403
        assert answer.json()["code"] == "account_not_allowed"
    with worker_session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0


async def test_default_redirect_is_our_own_callback(
    client: httpx.AsyncClient, api_server: str, fake_linuxdo: FakeLinuxDo
) -> None:
    started = await client.get("/v1/auth/oauth/linuxdo/authorize")
    query = parse_qs(urlsplit(started.json()["authorization_url"]).query)
    assert query["redirect_uri"] == [f"{api_server}/v1/auth/oauth/linuxdo/callback"]
    assert query["client_id"] == ["switchboard-test-client"]
    assert query["response_type"] == ["code"]
