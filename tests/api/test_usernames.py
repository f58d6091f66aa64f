"""Usernames (API.md): letters and digits of any script, `_`, `.`, `-`, NFKC-normalised and
unique regardless of case, on every route that takes one."""

from __future__ import annotations

import httpx
import pytest

PASSWORD = "correct horse battery staple"


async def register(client: httpx.AsyncClient, email: str, username: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/register", json={"email": email, "password": PASSWORD, "username": username}
    )


async def test_chinese_username_registers_and_collides_with_itself(
    client: httpx.AsyncClient,
) -> None:
    first = await register(client, "xiaoming@example.com", "小明")
    assert first.status_code == 201, first.text
    assert first.json()["user"]["username"] == "小明"
    again = await register(client, "other@example.com", "小明")
    assert again.status_code == 409
    assert again.json()["code"] == "username_taken"


async def test_case_variants_collide(client: httpx.AsyncClient) -> None:
    assert (await register(client, "ada@example.com", "AdaL")).status_code == 201
    clash = await register(client, "ada2@example.com", "adal")
    assert clash.status_code == 409
    assert clash.json()["code"] == "username_taken"


async def test_nfkc_makes_fullwidth_the_ascii_it_looks_like(client: httpx.AsyncClient) -> None:
    wide = await register(client, "wide@example.com", "ＡＢＣ")
    assert wide.status_code == 201, wide.text
    assert wide.json()["user"]["username"] == "ABC"
    clash = await register(client, "narrow@example.com", "abc")
    assert clash.status_code == 409


@pytest.mark.parametrize(
    "username", ["ab", "明", "x" * 51, "明" * 26, "ada lovelace", "ada@home", "<b>", "a/b"]
)
async def test_names_outside_the_rule_are_refused(client: httpx.AsyncClient, username: str) -> None:
    answer = await register(client, "bad@example.com", username)
    assert answer.status_code == 422, (username, answer.text)


async def test_profile_update_takes_the_same_rule(client: httpx.AsyncClient, make_user) -> None:
    assert (await register(client, "taken@example.com", "Zoë")).status_code == 201
    user = make_user()
    clash = await client.put("/v1/user/profile", json={"username": "ZOË"}, headers=user.headers)
    assert clash.status_code == 409
    renamed = await client.put(
        "/v1/user/profile", json={"username": "ｓｈｉｎ.明-2"}, headers=user.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["username"] == "shin.明-2"
    refused = await client.put("/v1/user/profile", json={"username": "a b"}, headers=user.headers)
    assert refused.status_code == 422
