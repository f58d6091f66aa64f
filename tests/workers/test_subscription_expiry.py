"""The expiry beat job through a running worker, its clock driven through its own `now`:
ended subscriptions go, a waiting one starts, the user with nothing left is on free (and
an API key sees it at once); a second run changes nothing; a redemption racing the job
leaves one consistent subscription."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update

from core.celery_app import celery_app
from core.db import worker_session
from core.subscriptions import expire_subscriptions
from models import Subscription, User


def _rows(user_id) -> list[tuple[str, str]]:
    with worker_session() as session:
        return [
            (row.plan, row.status)
            for row in session.scalars(
                select(Subscription)
                .where(Subscription.user_id == user_id)
                .order_by(Subscription.current_period_start)
            )
        ]


def _plan(user_id) -> str:
    with worker_session() as session:
        return session.scalar(select(User.plan).where(User.id == user_id))


def _wait_for(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("the expiry job did not run in time")


async def _redeem(client: httpx.AsyncClient, user, code: str) -> httpx.Response:
    return await client.post("/v1/user/redeem", headers=user.headers, json={"code": code})


async def test_expiry_job_ends_starts_and_frees(
    client: httpx.AsyncClient, celery_worker, make_user
) -> None:
    admin, member, lone = make_user(is_superuser=True), make_user(), make_user(plan="pro")
    made = await client.post(
        "/v1/admin/redemption-codes",
        headers=admin.headers,
        json={"plan": "max", "days": 10, "count": 1},
    )
    (max_code,) = made.json()["codes"]
    made = await client.post(
        "/v1/admin/redemption-codes",
        headers=admin.headers,
        json={"plan": "pro", "days": 30, "count": 1},
    )
    (pro_code,) = made.json()["codes"]
    assert (await _redeem(client, member, max_code)).status_code == 200
    assert (await _redeem(client, member, pro_code)).json()["status"] == "pending"
    key = (
        await client.post("/v1/developer/api-keys", headers=lone.headers, json={"name": "k"})
    ).json()["key"]
    models = await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert "kimi-k2.6" in [m["id"] for m in models.json()["data"]]

    # Eleven days on: max is over, pro starts where it ended; `lone`'s 30 days are not.
    later = datetime.now(UTC) + timedelta(days=11)
    celery_app.send_task("workers.subscriptions.expire", kwargs={"now": later.isoformat()})
    _wait_for(lambda: _rows(member.id) == [("max", "expired"), ("pro", "active")])
    assert _plan(member.id) == "pro" and _plan(lone.id) == "pro"
    sub = (await client.get("/v1/user/subscription", headers=member.headers)).json()
    assert (sub["plan"], sub["status"]) == ("pro", "active")
    assert expire_subscriptions(later) == 0

    # Past everything: both on free; a second run at the same moment changes nothing.
    much_later = datetime.now(UTC) + timedelta(days=60)
    celery_app.send_task("workers.subscriptions.expire", kwargs={"now": much_later.isoformat()})
    _wait_for(lambda: _plan(member.id) == "free" and _plan(lone.id) == "free")
    assert _rows(member.id) == [("max", "expired"), ("pro", "expired")]
    assert _rows(lone.id) == [("pro", "expired")]
    assert expire_subscriptions(much_later) == 0
    assert _rows(member.id) == [("max", "expired"), ("pro", "expired")]
    plan = (await client.get("/v1/user/plan", headers=member.headers)).json()
    assert plan["plan"] == "free" and plan["rpm"] == 20
    # The cached API key of `lone` follows at once.
    models = await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert "kimi-k2.6" not in [m["id"] for m in models.json()["data"]]


async def test_cancelled_plan_ends_as_cancelled(client: httpx.AsyncClient, make_user) -> None:
    member = make_user(plan="max")
    assert (await client.post("/v1/user/subscription/cancel", headers=member.headers)).is_success
    assert expire_subscriptions(datetime.now(UTC) + timedelta(days=31)) == 1
    assert _rows(member.id) == [("max", "cancelled")] and _plan(member.id) == "free"


async def test_redemption_racing_the_expiry_leaves_one_subscription(
    client: httpx.AsyncClient, make_user
) -> None:
    admin = make_user(is_superuser=True)
    users = [make_user(plan="pro") for _ in range(4)]
    made = await client.post(
        "/v1/admin/redemption-codes",
        headers=admin.headers,
        json={"plan": "max", "days": 30, "count": len(users)},
    )
    codes = made.json()["codes"]
    # Their pro periods have just ended; the job and the redemptions run at the same moment.
    now = datetime.now(UTC)
    with worker_session() as session:
        session.execute(
            update(Subscription).values(
                current_period_start=now - timedelta(days=30),
                current_period_end=now - timedelta(seconds=1),
            )
        )
    expiry = asyncio.to_thread(expire_subscriptions, datetime.now(UTC))
    answers = await asyncio.gather(
        expiry, *(_redeem(client, user, code) for user, code in zip(users, codes, strict=True))
    )
    assert all(a.status_code == 200 for a in answers[1:])
    for user in users:
        # Whichever ran first: pro ended once, max in force, the cached plan agrees.
        assert _rows(user.id) == [("pro", "expired"), ("max", "active")]
        assert _plan(user.id) == "max"
    assert expire_subscriptions(datetime.now(UTC)) == 0
