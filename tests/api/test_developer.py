"""API keys and usage through the running API: create/list/revoke across two
replicas, expiry, the plan's key maximum, use counters and their flush."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update

from core.api_keys import REQUESTS_KEY
from core.db import worker_session
from core.plans import listed_models_for_plan
from core.redis import sync_redis
from core.security import hash_token
from models import ApiKey
from workers.tasks.api_keys import flush_key_usage


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _create_key(client: httpx.AsyncClient, user, **body) -> dict:
    answer = await client.post(
        "/v1/developer/api-keys", json={"name": "k", **body}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_key_lifecycle_across_replicas(
    client: httpx.AsyncClient, second_api_server: str, make_user
) -> None:
    owner, stranger = make_user(plan="pro"), make_user()
    created = await _create_key(
        client, owner, name="ci", description="nightly", rate_limit=7, expires_in_days=30
    )
    key = created["key"]
    assert key.startswith("sk-sb-") and len(key) >= len("sk-sb-") + 32
    assert created["key_prefix"] == key[:12] and created["is_active"] is True
    assert created["rate_limit"] == 7 and created["is_expired"] is False
    with worker_session() as session:
        stored = session.scalar(select(ApiKey).where(ApiKey.id == created["id"]))
        assert stored.key_hash == hash_token(key) and key not in stored.key_prefix

    async with httpx.AsyncClient(base_url=second_api_server, timeout=30) as replica:
        for api in (client, replica):
            models = await api.get("/v1/models", headers=_bearer(key))
            assert models.status_code == 200, models.text
            listed = [name for name, _ in listed_models_for_plan("pro")]
            assert [m["id"] for m in models.json()["data"]] == listed
            current = await api.get("/v1/developer/usage/current", headers=_bearer(key))
            assert current.status_code == 200 and current.json()["plan"] == "pro"

        listed = await client.get("/v1/developer/api-keys", headers=owner.headers)
        assert key not in listed.text
        (entry,) = listed.json()
        assert entry["id"] == created["id"] and entry["total_requests"] == 4
        assert entry["last_used_at"] is not None

        # Another user's key id is simply not there.
        assert (
            await client.delete(f"/v1/developer/api-keys/{entry['id']}", headers=stranger.headers)
        ).status_code == 404
        assert (await client.get("/v1/developer/api-keys", headers=stranger.headers)).json() == []

        revoked = await replica.delete(
            f"/v1/developer/api-keys/{entry['id']}", headers=owner.headers
        )
        assert revoked.status_code == 204
        for api in (client, replica):
            refused = await api.get("/v1/models", headers=_bearer(key))
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "token_invalid"
            refused = await api.get("/v1/developer/usage/current", headers=_bearer(key))
            assert refused.status_code == 401 and refused.json()["code"] == "token_invalid"
        again = await client.delete(f"/v1/developer/api-keys/{entry['id']}", headers=owner.headers)
        assert again.status_code == 404
        assert (await client.get("/v1/developer/api-keys", headers=owner.headers)).json() == []


async def test_expired_keys_are_refused(client: httpx.AsyncClient, make_user) -> None:
    user = make_user()
    stale = await _create_key(client, user, expires_in_days=1)
    soon = await _create_key(client, user, expires_in_days=1)
    now = datetime.now(UTC)
    # Moving expiry in the database stands in for days passing.
    with worker_session() as session:
        session.execute(
            update(ApiKey).where(ApiKey.id == stale["id"]).values(expires_at=now - timedelta(1))
        )
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == soon["id"])
            .values(expires_at=now + timedelta(seconds=1.5))
        )
    refused = await client.get("/v1/models", headers=_bearer(stale["key"]))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_expired"

    # Accepted (and cached) while valid, refused from the cache once its time has passed.
    assert (await client.get("/v1/models", headers=_bearer(soon["key"]))).status_code == 200
    time.sleep(max((now + timedelta(seconds=1.6) - datetime.now(UTC)).total_seconds(), 0))
    refused = await client.get("/v1/models", headers=_bearer(soon["key"]))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_expired"

    listed = {
        k["id"]: k
        for k in (await client.get("/v1/developer/api-keys", headers=user.headers)).json()
    }
    assert listed[stale["id"]]["is_expired"] and listed[soon["id"]]["is_expired"]
    # Expired keys do not count against the plan's maximum.
    for _ in range(5):
        await _create_key(client, user)
    over = await client.post("/v1/developer/api-keys", json={"name": "x"}, headers=user.headers)
    assert over.status_code == 403 and over.json()["code"] == "api_key_limit"


async def test_concurrent_creates_respect_the_plan_maximum(
    client: httpx.AsyncClient, make_user
) -> None:
    """The key service counts under the user's row lock: a burst of creates past the
    free plan's maximum of five gets five keys, the rest 403 `api_key_limit`."""
    user = make_user(plan="free")
    answers = await asyncio.gather(
        *(
            client.post("/v1/developer/api-keys", json={"name": f"k{n}"}, headers=user.headers)
            for n in range(8)
        )
    )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201] * 5 + [403] * 3
    assert {a.json()["code"] for a in answers if a.status_code == 403} == {"api_key_limit"}


async def test_unknown_and_malformed_keys(client: httpx.AsyncClient) -> None:
    for token in ("sk-sb-" + "A" * 43, "not-a-jwt"):
        answer = await client.get("/v1/developer/usage/current", headers=_bearer(token))
        assert answer.status_code == 401 and answer.json()["code"] == "token_invalid"
    answer = await client.get("/v1/models")
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"


async def test_use_counters_flush_once(client: httpx.AsyncClient, make_user) -> None:
    user = make_user()
    created = await _create_key(client, user)
    for _ in range(3):
        assert (await client.get("/v1/models", headers=_bearer(created["key"]))).status_code == 200

    assert flush_key_usage() == 1
    assert not sync_redis().exists(REQUESTS_KEY)
    with worker_session() as session:
        stored = session.get(ApiKey, created["id"])
        assert stored.total_requests == 3 and stored.last_used_at is not None
    # Flushed counts are not shown twice, and a flush with nothing new changes nothing.
    assert flush_key_usage() == 0
    assert (await client.get("/v1/models", headers=_bearer(created["key"]))).status_code == 200
    (entry,) = (await client.get("/v1/developer/api-keys", headers=user.headers)).json()
    assert entry["total_requests"] == 4
    flush_key_usage()
    with worker_session() as session:
        assert session.get(ApiKey, created["id"]).total_requests == 4


async def test_usage_current_with_a_jwt(client: httpx.AsyncClient, make_user) -> None:
    user = make_user(plan="max")
    answer = await client.get("/v1/developer/usage/current", headers=user.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["plan"] == "max" and body["quota_used"] == 0
    assert body["quota_total"] == body["quota_remaining"] == 1_000_000
    assert 28 <= body["days_until_reset"] <= 31
