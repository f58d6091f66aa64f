"""`/api/plugin-api/*` (seeds/004): the same routes as `/v1/plugin-api/*`, each reaching
plug-in-api with the user's own key, and the chat route answering errors in OpenAI's shape."""

from __future__ import annotations

import httpx

from tests.api.test_plugin_api import provisioned
from tests.conftest import ServiceProcess
from tests.fakes.plugin_api import FakePluginApi


async def test_alias_routes_reach_plugin_api_with_the_users_own_key(
    client: httpx.AsyncClient,
    api_server: str,
    celery_worker: ServiceProcess,
    fake_plugin_api: FakePluginApi,
) -> None:
    _, headers, upstream = await provisioned(client, fake_plugin_api, "alias@example.com")
    user_key = f"Bearer {upstream.api_key}"
    before = len(fake_plugin_api.seen)

    key = await client.get("/api/plugin-api/key", headers=headers)
    assert key.status_code == 200
    assert key.json()["status"] == "active"
    assert upstream.api_key not in key.text

    authorize = await client.post(
        "/api/plugin-api/oauth/authorize", json={"is_shared": 0}, headers=headers
    )
    assert authorize.status_code == 200, authorize.text
    listed = await client.get("/api/plugin-api/accounts", headers=headers)
    assert listed.status_code == 200
    assert listed.json() == (await client.get("/v1/plugin-api/accounts", headers=headers)).json()
    quotas = await client.get("/api/plugin-api/quotas/user", headers=headers)
    assert quotas.json()["data"][0]["user_id"] == upstream.user_id
    preference = await client.put(
        "/api/plugin-api/preference", json={"prefer_shared": 1}, headers=headers
    )
    assert preference.status_code == 200
    assert upstream.prefer_shared == 1

    chat = await client.post(
        "/api/plugin-api/chat/completions",
        json={
            "model": "gemini-3-pro-high",
            "messages": [{"role": "user", "content": "hi [[tag=alias tokens=3]]"}],
            "stream": False,
        },
        headers=headers,
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["object"] == "chat.completion"

    proxied = fake_plugin_api.seen[before:]
    assert {seen.path for seen in proxied} >= {
        "/api/oauth/authorize",
        "/api/accounts",
        "/api/quotas/user",
        f"/api/users/{upstream.user_id}/preference",
        "/v1/chat/completions",
    }
    assert {seen.authorization for seen in proxied} == {user_key}


async def test_alias_chat_errors_in_openai_shape(
    client: httpx.AsyncClient, api_server: str, make_user
) -> None:
    user = make_user()
    pending = await client.post(
        "/api/plugin-api/chat/completions",
        json={"model": "gemini-3-pro-high", "messages": [{"role": "user", "content": "hi"}]},
        headers=user.headers,
    )
    assert pending.status_code == 409
    assert pending.json()["error"]["code"] == "plugin_account_pending"
    invalid = await client.post(
        "/api/plugin-api/chat/completions", json={"model": 1}, headers=user.headers
    )
    assert invalid.status_code in (400, 422)
    assert set(invalid.json()) == {"error"}
    # The other alias routes answer in our own shape, as under /v1.
    accounts = await client.get("/api/plugin-api/accounts", headers=user.headers)
    assert accounts.status_code == 409
    assert accounts.json()["code"] == "plugin_account_pending"
    assert (await client.get("/api/plugin-api/accounts")).status_code == 401


async def test_alias_is_listed_under_compatibility_with_unique_operation_ids(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    operations = [
        (path, operation)
        for path, methods in spec["paths"].items()
        for operation in methods.values()
        if isinstance(operation, dict) and "operationId" in operation
    ]
    ids = [operation["operationId"] for _, operation in operations]
    assert len(ids) == len(set(ids))
    v1 = {p.removeprefix("/v1/plugin-api") for p, _ in operations if p.startswith("/v1/plugin-api")}
    alias = [(p, o) for p, o in operations if p.startswith("/api/plugin-api")]
    assert {p.removeprefix("/api/plugin-api") for p, _ in alias} == v1
    assert all(o["tags"] == ["compatibility"] for _, o in alias)
