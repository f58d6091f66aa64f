"""Malformed base URLs through the real API: every one a clean 422 naming the field."""

from __future__ import annotations

import pytest

HOSTILE_URLS = [
    "http://xn--/",  # an A-label with nothing to decode: IDNA raises on the host
    "http://xn--zz-.com/",
    "http://[::1",
    "http://a..b/",
    "http://" + "a" * 300 + ".com/",
    "http://" + "a." * 130 + "com/",  # every label short, the name too long
    "http://exa mple.com",
    "http://%00/",
    "http://example.com:99999/",
    "http://example.com:0/",
    "http://[zz]/",
    "http:///v1",
]


def assert_refused(answer) -> None:
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "validation_error"
    [item] = body["detail"]
    assert item["loc"] == ["body", "base_url"]
    assert item["msg"].startswith("base_url")
    assert item["type"]


@pytest.mark.parametrize("base_url", HOSTILE_URLS)
async def test_malformed_base_url_is_refused_on_create(client, make_user, base_url):
    user = make_user()
    answer = await client.post(
        "/v1/model-configs",
        json={"base_url": base_url, "model": "m", "api_key": "sk-abcdefgh"},
        headers=user.headers,
    )
    assert_refused(answer)
    assert (await client.get("/v1/model-configs", headers=user.headers)).json() == []


async def test_malformed_base_url_is_refused_on_update_and_the_old_one_stays(client, make_user):
    user = make_user()
    created = await client.post(
        "/v1/model-configs",
        json={"base_url": "https://1.1.1.1/v1", "model": "m", "api_key": "sk-abcdefgh"},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    path = f"/v1/model-configs/{created.json()['id']}"
    for base_url in HOSTILE_URLS:
        assert_refused(await client.put(path, json={"base_url": base_url}, headers=user.headers))
    [config] = (await client.get("/v1/model-configs", headers=user.headers)).json()
    assert config["base_url"] == "https://1.1.1.1/v1"
