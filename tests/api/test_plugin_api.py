"""The plug-in-api proxy through the running API and worker, against the fake plug-in-api."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
from sqlalchemy import select

from core.celery_app import celery_app
from core.crypto import decrypt_secret
from core.db import worker_session
from models import Generation, PluginAccount, UsageRecord
from tests.conftest import TEST_ENV, ServiceProcess
from tests.fakes.openai_protocol import expected_reply
from tests.fakes.plugin_api import ADMIN_KEY, FakePluginApi, FakeUser

PASSWORD = "correct horse battery staple"


async def register(client: httpx.AsyncClient, email: str) -> tuple[uuid.UUID, dict[str, str]]:
    answer = await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return uuid.UUID(body["user"]["id"]), {"Authorization": f"Bearer {body['access_token']}"}


def stored_account(user_id: uuid.UUID) -> PluginAccount | None:
    with worker_session() as session:
        return session.scalar(select(PluginAccount).where(PluginAccount.user_id == user_id))


async def wait_for_account(user_id: uuid.UUID, status: str, timeout: float = 30) -> PluginAccount:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        account = stored_account(user_id)
        if account is not None and account.status == status:
            return account
        await asyncio.sleep(0.1)
    raise AssertionError(f"account of {user_id} not {status}: {stored_account(user_id)}")


async def provisioned(
    client: httpx.AsyncClient, fake: FakePluginApi, email: str
) -> tuple[uuid.UUID, dict[str, str], FakeUser]:
    user_id, headers = await register(client, email)
    await wait_for_account(user_id, "active")
    return user_id, headers, fake.user_named(f"switchboard-{user_id}")


def api_log(api_server: str) -> str:
    port = urlsplit(api_server).port
    return (Path(TEST_ENV["DATA_DIR"]) / f"api-{port}.log").read_text(errors="replace")


async def test_register_provisions_and_every_route_uses_the_users_own_key(
    client: httpx.AsyncClient,
    api_server: str,
    celery_worker: ServiceProcess,
    fake_plugin_api: FakePluginApi,
) -> None:
    user_id, headers, upstream = await provisioned(client, fake_plugin_api, "ada@example.com")

    creations = fake_plugin_api.seen_at("POST", "/api/users")
    assert [c.authorization for c in creations] == [f"Bearer {ADMIN_KEY}"]
    assert creations[0].body == {"name": f"switchboard-{user_id}", "prefer_shared": 0}
    account = stored_account(user_id)
    assert account is not None and account.plugin_user_id == upstream.user_id
    assert account.api_key_encrypted != upstream.api_key
    assert decrypt_secret(account.api_key_encrypted) == upstream.api_key

    key = await client.get("/v1/plugin-api/key", headers=headers)
    assert key.status_code == 200
    assert set(key.json()) == {"status", "plugin_user_id", "created_at", "last_used_at"}
    assert key.json()["status"] == "active"
    assert key.json()["plugin_user_id"] == upstream.user_id
    assert key.json()["last_used_at"] is None
    assert upstream.api_key not in key.text

    user_key = f"Bearer {upstream.api_key}"
    before = len(fake_plugin_api.seen)

    authorize = await client.post(
        "/v1/plugin-api/oauth/authorize", json={"is_shared": 1}, headers=headers
    )
    assert authorize.status_code == 200, authorize.text
    assert authorize.json()["data"]["state"] == f"{upstream.user_id}:1"

    callback = await client.post(
        "/v1/plugin-api/oauth/callback",
        json={"callback_url": "http://localhost/cb?code=abc&state=x"},
        headers=headers,
    )
    assert callback.status_code == 200, callback.text
    cookie_id = callback.json()["data"]["cookie_id"]
    assert list(upstream.accounts) == [cookie_id]

    listed = await client.get("/v1/plugin-api/accounts", headers=headers)
    assert listed.json() == {"success": True, "data": list(upstream.accounts.values())}
    one = await client.get(f"/v1/plugin-api/accounts/{cookie_id}", headers=headers)
    assert one.json()["data"] == upstream.accounts[cookie_id]

    disabled = await client.put(
        f"/v1/plugin-api/accounts/{cookie_id}/status", json={"status": 0}, headers=headers
    )
    assert disabled.status_code == 200
    assert upstream.accounts[cookie_id]["status"] == 0

    quotas = await client.get(f"/v1/plugin-api/accounts/{cookie_id}/quotas", headers=headers)
    assert quotas.json()["data"][0]["cookie_id"] == cookie_id
    user_quotas = await client.get("/v1/plugin-api/quotas/user", headers=headers)
    assert user_quotas.json()["data"][0]["user_id"] == upstream.user_id
    pool = await client.get("/v1/plugin-api/quotas/shared-pool", headers=headers)
    assert pool.json()["data"]["requested_by"] == upstream.user_id
    consumption = await client.get(
        "/v1/plugin-api/quotas/consumption",
        params={"limit": 10, "start_date": "2025-01-01", "end_date": "2025-01-31"},
        headers=headers,
    )
    assert consumption.json()["data"]["query"] == {
        "limit": "10",
        "start_date": "2025-01-01",
        "end_date": "2025-01-31",
    }
    models = await client.get("/v1/plugin-api/models", headers=headers)
    assert models.json()["data"][0]["owned_by"] == upstream.user_id

    preference = await client.put(
        "/v1/plugin-api/preference", json={"prefer_shared": 1}, headers=headers
    )
    assert preference.status_code == 200, preference.text
    assert upstream.prefer_shared == 1

    deleted = await client.delete(f"/v1/plugin-api/accounts/{cookie_id}", headers=headers)
    assert deleted.status_code == 200
    assert upstream.accounts == {}

    proxied = fake_plugin_api.seen[before:]
    assert [(s.method, s.path) for s in proxied] == [
        ("POST", "/api/oauth/authorize"),
        ("POST", "/api/oauth/callback/manual"),
        ("GET", "/api/accounts"),
        ("GET", f"/api/accounts/{cookie_id}"),
        ("PUT", f"/api/accounts/{cookie_id}/status"),
        ("GET", f"/api/accounts/{cookie_id}/quotas"),
        ("GET", "/api/quotas/user"),
        ("GET", "/api/quotas/shared-pool"),
        ("GET", "/api/quotas/consumption"),
        ("GET", "/v1/models"),
        ("PUT", f"/api/users/{upstream.user_id}/preference"),
        ("DELETE", f"/api/accounts/{cookie_id}"),
    ]
    assert {s.authorization for s in proxied} == {user_key}

    # Last use shows at once (from Redis) and reaches PostgreSQL with the flush job.
    used = (await client.get("/v1/plugin-api/key", headers=headers)).json()["last_used_at"]
    assert used is not None
    assert stored_account(user_id).last_used_at is None
    celery_app.send_task("workers.plugin.flush_last_used")
    deadline = time.monotonic() + 20
    while stored_account(user_id).last_used_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert stored_account(user_id).last_used_at == datetime.fromisoformat(used)

    for secret in (upstream.api_key, ADMIN_KEY):
        assert secret not in api_log(api_server)
        assert secret not in celery_worker.log_text()


async def test_two_users_keys_never_cross(
    client: httpx.AsyncClient, celery_worker: ServiceProcess, fake_plugin_api: FakePluginApi
) -> None:
    (_, headers_a, upstream_a), (_, headers_b, upstream_b) = await asyncio.gather(
        provisioned(client, fake_plugin_api, "a@example.com"),
        provisioned(client, fake_plugin_api, "b@example.com"),
    )
    assert upstream_a.api_key != upstream_b.api_key
    cookie_a = fake_plugin_api.link_account(upstream_a)["cookie_id"]
    cookie_b = fake_plugin_api.link_account(upstream_b)["cookie_id"]
    before = len(fake_plugin_api.seen)

    expected, calls = [], []
    for _ in range(5):
        for headers, owner, cookie in (
            (headers_a, upstream_a, cookie_a),
            (headers_b, upstream_b, cookie_b),
        ):
            calls.append(client.get(f"/v1/plugin-api/accounts/{cookie}", headers=headers))
            expected.append(owner.accounts[cookie])
            calls.append(client.get("/v1/plugin-api/quotas/user", headers=headers))
            expected.append(
                [{"user_id": owner.user_id, "model_name": "gemini-3-pro-high", "quota": "2.0"}]
            )
    answers = await asyncio.gather(*calls)

    # The fake finds a cookie only under its owner's key: a crossed key would be a 404.
    assert [answer.status_code for answer in answers] == [200] * len(calls)
    assert [answer.json()["data"] for answer in answers] == expected
    seen = fake_plugin_api.seen[before:]
    by_cookie = {cookie_a: upstream_a.api_key, cookie_b: upstream_b.api_key}
    for request in seen:
        cookie = request.path.rsplit("/", 1)[-1]
        if cookie in by_cookie:
            assert request.authorization == f"Bearer {by_cookie[cookie]}"
    assert sorted(s.authorization for s in seen) == sorted(
        [f"Bearer {upstream_a.api_key}"] * 10 + [f"Bearer {upstream_b.api_key}"] * 10
    )


async def test_pending_account_answers_409(
    client: httpx.AsyncClient, make_user, fake_plugin_api: FakePluginApi
) -> None:
    user = make_user()
    key = await client.get("/v1/plugin-api/key", headers=user.headers)
    assert key.json() == {
        "status": "pending",
        "plugin_user_id": None,
        "created_at": None,
        "last_used_at": None,
    }
    for path in ("/v1/plugin-api/accounts", "/v1/plugin-api/models"):
        answer = await client.get(path, headers=user.headers)
        assert answer.status_code == 409
        assert answer.json()["code"] == "plugin_account_pending"
    chat = await client.post(
        "/v1/plugin-api/chat/completions",
        json={"model": "gemini-3-pro-high", "messages": [{"role": "user", "content": "hi"}]},
        headers=user.headers,
    )
    assert chat.status_code == 409
    assert chat.json()["error"]["code"] == "plugin_account_pending"
    assert fake_plugin_api.seen == []
    assert (await client.get("/v1/plugin-api/accounts")).status_code == 401
    # Refused before the quota: the pending account cost no request.
    usage = await client.get("/v1/developer/usage/current", headers=user.headers)
    assert usage.json()["quota_used"] == 0


async def test_a_developer_api_key_reaches_the_users_plugin_account(
    client: httpx.AsyncClient, celery_worker: ServiceProcess, fake_plugin_api: FakePluginApi
) -> None:
    _, headers, upstream = await provisioned(client, fake_plugin_api, "dev@example.com")
    created = await client.post("/v1/developer/api-keys", json={"name": "ci"}, headers=headers)
    assert created.status_code == 201, created.text
    api_key_headers = {"Authorization": f"Bearer {created.json()['key']}"}

    key = await client.get("/v1/plugin-api/key", headers=api_key_headers)
    assert key.json()["plugin_user_id"] == upstream.user_id
    models = await client.get("/v1/plugin-api/models", headers=api_key_headers)
    assert models.status_code == 200
    assert models.json()["data"][0]["owned_by"] == upstream.user_id
    assert fake_plugin_api.seen[-1].authorization == f"Bearer {upstream.api_key}"


async def test_upstream_failures_map_to_the_envelope(
    client: httpx.AsyncClient, celery_worker: ServiceProcess, fake_plugin_api: FakePluginApi
) -> None:
    _, headers, upstream = await provisioned(client, fake_plugin_api, "err@example.com")

    missing = await client.get("/v1/plugin-api/accounts/nope", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": "账号不存在",
        "code": "not_found",
        "upstream": {"success": False, "error": "账号不存在"},
    }
    bad = await client.post(
        "/v1/plugin-api/oauth/callback", json={"callback_url": "http://x/cb"}, headers=headers
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "bad_request"
    assert bad.json()["detail"] == "no code in callback_url"

    fake_plugin_api.fail[("GET", "/api/quotas/user")] = 500
    failed = await client.get("/v1/plugin-api/quotas/user", headers=headers)
    assert failed.status_code == 502
    assert failed.json() == {
        "detail": "The plug-in API failed to answer the request.",
        "code": "upstream_error",
    }
    # Our stored key refused upstream is our fault, not a reason to sign the user out.
    fake_plugin_api.fail[("GET", "/api/quotas/user")] = 401
    refused = await client.get("/v1/plugin-api/quotas/user", headers=headers)
    assert refused.status_code == 502

    fake_plugin_api.stop()
    down = await client.get("/v1/plugin-api/quotas/user", headers=headers)
    assert down.status_code == 503
    assert down.json()["code"] == "unavailable"
    assert down.headers["retry-after"] == "5"
    fake_plugin_api.start()
    assert upstream.api_key not in missing.text + failed.text + down.text


async def test_bodies_are_validated_before_going_upstream(
    client: httpx.AsyncClient, celery_worker: ServiceProcess, fake_plugin_api: FakePluginApi
) -> None:
    _, headers, _ = await provisioned(client, fake_plugin_api, "val@example.com")
    before = len(fake_plugin_api.seen)
    for path, body in (
        ("/v1/plugin-api/oauth/authorize", {"is_shared": 2}),
        ("/v1/plugin-api/oauth/authorize", {"is_shared": 0, "extra": 1}),
        ("/v1/plugin-api/oauth/callback", {}),
    ):
        answer = await client.post(path, json=body, headers=headers)
        assert answer.status_code == 422, (path, body)
        assert answer.json()["code"] == "validation_error"
    dotted = await client.get("/v1/plugin-api/accounts/.hidden", headers=headers)
    assert dotted.status_code == 422
    assert len(fake_plugin_api.seen) == before


async def finished_generations(
    user_id: uuid.UUID, count: int, timeout: float = 30
) -> list[Generation]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with worker_session() as session:
            rows = session.scalars(select(Generation).where(Generation.user_id == user_id)).all()
        if len(rows) == count and all(g.status not in ("queued", "running") for g in rows):
            return list(rows)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} generations of {user_id} did not finish")


async def test_chat_completions_go_through_the_worker_with_the_users_key(
    client: httpx.AsyncClient,
    api_server: str,
    celery_worker: ServiceProcess,
    fake_plugin_api: FakePluginApi,
) -> None:
    user_id, headers, upstream = await provisioned(client, fake_plugin_api, "chat@example.com")
    # Tokens 60 ms apart: each crosses the worker's flush interval on its own.
    prompt = "hello [[tag=plug tokens=6 delay=0.06]]"
    pieces, usage = [], None
    async with client.stream(
        "POST",
        "/v1/plugin-api/chat/completions",
        json={
            "model": "gemini-3-pro-high",
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers=headers,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-ratelimit-limit"] == "20"
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        chunk = json.loads(line.removeprefix("data: "))
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "gemini-3-pro-high"
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            pieces.append(chunk["choices"][0]["delta"]["content"])
        usage = chunk.get("usage") or usage
    assert "".join(pieces) == expected_reply(prompt)
    assert len(pieces) > 1
    assert usage is not None and usage["completion_tokens"] == 6

    sent = fake_plugin_api.seen_at("POST", "/v1/chat/completions")
    assert [s.authorization for s in sent] == [f"Bearer {upstream.api_key}"]
    assert sent[0].body["model"] == "gemini-3-pro-high" and sent[0].body["stream"] is True

    # Not streamed, from the SDK with a developer API key: same pipeline, same key upstream.
    created = await client.post("/v1/developer/api-keys", json={"name": "sdk"}, headers=headers)
    sdk = openai.AsyncOpenAI(
        base_url=api_server + "/v1/plugin-api", api_key=created.json()["key"], max_retries=0
    )
    whole = "again [[tag=plug2 tokens=4]]"
    answer = await sdk.chat.completions.create(
        model="gemini-3-pro-high", messages=[{"role": "user", "content": whole}]
    )
    assert answer.choices[0].message.content == expected_reply(whole)
    assert answer.choices[0].finish_reason == "stop" and answer.usage.completion_tokens == 4
    sent = fake_plugin_api.seen_at("POST", "/v1/chat/completions")
    assert sent[-1].authorization == f"Bearer {upstream.api_key}"

    generations = await finished_generations(user_id, 2)
    assert {(g.kind, g.provider, g.status) for g in generations} == {("plugin", "plugin", "done")}
    with worker_session() as session:
        records = session.scalars(
            select(UsageRecord).where(UsageRecord.user_id == user_id).order_by(UsageRecord.id)
        ).all()
    assert [r.completion_tokens for r in records] == [6, 4]
    assert [r.api_key_id is not None for r in records] == [False, True]
    assert records[0].prompt_tokens == usage["prompt_tokens"]
    current = await client.get("/v1/developer/usage/current", headers=headers)
    assert current.json()["quota_used"] == 2
    for secret in (upstream.api_key, ADMIN_KEY):
        assert secret not in api_log(api_server)
        assert secret not in celery_worker.log_text()
