"""Quotas and rate limits through running API replicas, the worker and the beat jobs:
no overspend under concurrency, rpm shared by replicas, refunds, sync, re-seed, reset."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.celery_app import celery_app
from core.db import worker_session
from core.quota import add_month, counter_key
from core.redis import sync_redis
from models import User
from workers.tasks.quotas import reset_quotas, sync_quotas

pytestmark = pytest.mark.usefixtures("celery_worker")

QUOTA_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def _period(days_ago: int = 3, used: int = 0) -> dict:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=days_ago)
    return {"quota_period_start_at": start, "quota_reset_at": add_month(start), "quota_used": used}


async def _api_key(client: httpx.AsyncClient, user, **body) -> dict[str, str]:
    answer = await client.post(
        "/v1/developer/api-keys", json={"name": "q", **body}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['key']}"}


def _completion(content: str = "hi [[tokens=2]]") -> dict:
    return {"model": "deepseek-chat", "messages": [{"role": "user", "content": content}]}


def _counter(user) -> int:
    with worker_session() as session:
        start = session.get(User, user.id).quota_period_start_at
    return int(sync_redis().get(counter_key(user.id, start)) or 0)


async def test_no_overspend_under_concurrency(client: httpx.AsyncClient, make_user) -> None:
    user = make_user(**_period(used=9_990))
    headers = await _api_key(client, user)
    answers = await asyncio.gather(
        *(
            client.post("/v1/chat/completions", json=_completion(), headers=headers)
            for _ in range(100)
        )
    )
    assert Counter(a.status_code for a in answers) == {200: 10, 402: 90}
    for answer in answers:
        assert all(name in answer.headers for name in QUOTA_HEADERS), answer.headers
        if answer.status_code == 402:
            assert answer.json()["error"]["code"] == "quota_exceeded"
            assert int(answer.headers["retry-after"]) > 0
    assert _counter(user) == 10_000
    current = (await client.get("/v1/developer/usage/current", headers=headers)).json()
    assert current["quota_used"] == 10_000 and current["quota_remaining"] == 0


async def test_rpm_is_shared_by_replicas(
    client: httpx.AsyncClient, second_api_server: str, make_user
) -> None:
    user = make_user(**_period())  # free plan: 20 requests per minute
    async with httpx.AsyncClient(base_url=second_api_server, timeout=30) as replica:
        answers = await asyncio.gather(
            *(
                api.post("/v1/chat/completions", json=_completion(), headers=user.headers)
                for _ in range(20)
                for api in (client, replica)
            )
        )
        assert Counter(a.status_code for a in answers) == {200: 20, 429: 20}
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-limit"] == "20"
        assert refused.headers["x-ratelimit-remaining"] == "0"
        # Refused requests spend no quota.
        assert _counter(user) == 20

        # A key's own limit applies on top of the plan's, across replicas too.
        other = make_user(**_period())
        headers = await _api_key(client, other, rate_limit=3)
        answers = await asyncio.gather(
            *(
                api.post("/v1/chat/completions", json=_completion(), headers=headers)
                for _ in range(4)
                for api in (client, replica)
            )
        )
        assert Counter(a.status_code for a in answers) == {200: 3, 429: 5}
        assert {a.headers["x-ratelimit-limit"] for a in answers} == {"3"}


async def test_failure_before_first_token_is_refunded(client: httpx.AsyncClient, make_user) -> None:
    user = make_user(**_period(used=100))
    failed = await client.post(
        "/v1/chat/completions", json=_completion("x [[status=400]]"), headers=user.headers
    )
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "upstream_error"
    assert "x-ratelimit-limit" in failed.headers
    assert _counter(user) == 100
    cut = await client.post(
        "/v1/chat/completions",
        json={**_completion("x [[tokens=5 fail_after=2]]"), "stream": True},
        headers=user.headers,
    )
    assert cut.status_code == 200 and '"error"' in cut.text
    # Tokens were produced: that request stays spent.
    assert _counter(user) == 101


async def test_sync_and_reseed_after_redis_loss(
    client: httpx.AsyncClient, make_user, celery_worker
) -> None:
    user = make_user(**_period(used=40))
    for _ in range(2):
        ok = await client.post("/v1/chat/completions", json=_completion(), headers=user.headers)
        assert ok.status_code == 200, ok.text
    assert _counter(user) == 42

    # Through the broker, as beat sends it. Waiting for the whole task, not just for its
    # update to show: its re-seed step would otherwise race the flush below.
    task_id = celery_app.send_task("workers.quotas.sync").id
    celery_worker.wait_for(lambda: f"[{task_id}] succeeded" in celery_worker.log_text(), 20)
    with worker_session() as session:
        assert session.get(User, user.id).quota_used == 42

    sync_redis().flushdb()
    assert sync_quotas()["seeded"] == 1
    assert _counter(user) == 42
    sync_redis().flushdb()
    # The hot path re-seeds too, when a request arrives before the sync job.
    ok = await client.post("/v1/chat/completions", json=_completion(), headers=user.headers)
    assert ok.status_code == 200 and _counter(user) == 43
    plan = (await client.get("/v1/user/plan", headers=user.headers)).json()
    assert plan["quota_used"] == 43 and plan["quota_remaining"] == 10_000 - 43


async def test_monthly_reset_is_idempotent(client: httpx.AsyncClient, make_user) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old_start = now - timedelta(days=40)
    old_reset = add_month(old_start)
    due = make_user(quota_period_start_at=old_start, quota_reset_at=old_reset, quota_used=500)
    not_due_period = _period(used=7)
    not_due = make_user(**not_due_period)
    headers = await _api_key(client, due)
    before = (await client.get("/v1/developer/usage/current", headers=headers)).json()
    assert before["quota_used"] == 500 and sync_redis().exists(counter_key(due.id, old_start))

    assert reset_quotas() == 1
    with worker_session() as session:
        row = session.get(User, due.id)
        snapshot = (row.quota_period_start_at, row.quota_reset_at, row.quota_used, row.updated_at)
        untouched = session.get(User, not_due.id)
        assert untouched.quota_used == 7
        assert untouched.quota_reset_at == not_due_period["quota_reset_at"]
    assert snapshot[:3] == (old_reset, add_month(old_reset), 0)
    assert not sync_redis().exists(counter_key(due.id, old_start))
    # The cached key follows the new period at once.
    after = (await client.get("/v1/developer/usage/current", headers=headers)).json()
    assert after["quota_used"] == 0
    assert datetime.fromisoformat(after["quota_reset_at"]) == add_month(old_reset)
    ok = await client.post("/v1/chat/completions", json=_completion(), headers=headers)
    assert ok.status_code == 200 and _counter(due) == 1

    assert reset_quotas() == 0
    with worker_session() as session:
        row = session.get(User, due.id)
        assert (
            row.quota_period_start_at,
            row.quota_reset_at,
            row.quota_used,
            row.updated_at,
        ) == snapshot
    assert _counter(due) == 1
