"""Plans, subscriptions and redemption codes through the running API: codes made by an
admin, redeemed (same plan extends, higher starts now, lower waits), cancelled, the
concurrent double redemption, the brute-force limit, admin-only routes, and a plan change
seen at once by an API key on another API process."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select

from core.config import settings
from core.db import worker_session
from core.plans import listed_models_for_plan
from core.security import hash_token
from core.subscriptions import hash_code, normalize_code
from models import RedemptionCode, Subscription, User


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _codes(client: httpx.AsyncClient, admin, **body) -> list[str]:
    made = await client.post(
        "/v1/admin/redemption-codes",
        headers=admin.headers,
        json={"count": 1, "days": 30, **body},
    )
    assert made.status_code == 201, made.text
    return made.json()["codes"]


async def _redeem(client: httpx.AsyncClient, user, code: str) -> httpx.Response:
    return await client.post("/v1/user/redeem", headers=user.headers, json={"code": code})


async def test_plans_are_public_with_prices(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/plans")
    assert answer.status_code == 200, answer.text
    plans = {plan["name"]: plan for plan in answer.json()}
    assert list(plans) == ["free", "pro", "max"]
    assert [(p["price"], p["currency"], p["billing_cycle"]) for p in plans.values()] == [
        (0, "USD", "monthly"),
        (29, "USD", "monthly"),
        (299, "USD", "monthly"),
    ]
    assert plans["pro"]["monthly_quota"] == 100_000 and plans["pro"]["rpm"] == 60
    assert plans["max"]["models"] == [name for name, _ in listed_models_for_plan("max")]


async def test_the_whole_lifecycle(client: httpx.AsyncClient, make_user) -> None:
    admin, member = make_user(is_superuser=True), make_user()

    none = (await client.get("/v1/user/subscription", headers=member.headers)).json()
    assert none == {
        "plan": "free",
        "status": "active",
        "price": 0,
        "currency": "USD",
        "billing_cycle": "monthly",
        "started_at": None,
        "current_period_start": None,
        "current_period_end": None,
        "cancelled_at": None,
        "cancel_at_period_end": False,
        "source": "default",
    }

    pro_a, pro_b = await _codes(client, admin, plan="pro", count=2, note="order 7")
    (max_code,) = await _codes(client, admin, plan="max", days=10)
    (lower,) = await _codes(client, admin, plan="pro", days=5)
    assert pro_a.startswith("SBR-") and len(normalize_code(pro_a)) == 28
    with worker_session() as session:
        stored = session.scalar(select(RedemptionCode).where(RedemptionCode.prefix == pro_a[:9]))
        assert stored.code_hash == hash_code(pro_a) != hash_token(pro_a.lower())
        assert stored.note == "order 7" and stored.redeemed_at is None

    first = await _redeem(client, member, pro_a)
    assert first.status_code == 200, first.text
    sub = first.json()
    assert (sub["plan"], sub["status"], sub["source"], sub["price"]) == (
        "pro",
        "active",
        "code",
        29,
    )
    end = _at(sub["current_period_end"])
    assert end - _at(sub["current_period_start"]) == timedelta(days=30)
    plan = (await client.get("/v1/user/plan", headers=member.headers)).json()
    assert plan["plan"] == "pro" and plan["rpm"] == 60

    # Typed differently (case, spaces), the same code: used.
    again = await _redeem(client, member, " " + pro_a.lower().replace("-", " "))
    assert again.status_code == 409 and again.json()["code"] == "code_used"
    assert (await _redeem(client, member, "SBR-NOPE")).status_code == 404

    # The same plan extends the current period.
    extended = (await _redeem(client, member, pro_b)).json()
    assert _at(extended["current_period_end"]) == end + timedelta(days=30)
    end = end + timedelta(days=30)

    # A higher plan starts now; the rest of pro waits after it.
    upgraded = (await _redeem(client, member, max_code)).json()
    assert (upgraded["plan"], upgraded["status"]) == ("max", "active")
    max_end = _at(upgraded["current_period_end"])
    assert (await client.get("/v1/user/plan", headers=member.headers)).json()["plan"] == "max"

    # A lower plan waits until the last period ends.
    waiting = (await _redeem(client, member, lower)).json()
    assert (waiting["plan"], waiting["status"]) == ("pro", "pending")
    assert _at(waiting["current_period_start"]) == end + timedelta(days=10)
    with worker_session() as session:
        rows = session.scalars(
            select(Subscription)
            .where(Subscription.user_id == member.id)
            .order_by(Subscription.current_period_start)
        ).all()
        assert [(r.plan, r.status) for r in rows] == [
            ("max", "active"),
            ("pro", "pending"),
            ("pro", "pending"),
        ]
        assert rows[1].current_period_start == max_end
        assert rows[1].current_period_end == end + timedelta(days=10)

    current = (await client.get("/v1/user/subscription", headers=member.headers)).json()
    assert current["plan"] == "max" and current["cancel_at_period_end"] is False

    cancelled = await client.post("/v1/user/subscription/cancel", headers=member.headers)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["cancel_at_period_end"] is True and body["cancelled_at"] is not None
    assert (body["plan"], body["status"]) == ("max", "active")
    with worker_session() as session:
        statuses = session.scalars(
            select(Subscription.status).where(
                Subscription.user_id == member.id, Subscription.plan == "pro"
            )
        ).all()
        assert statuses == ["cancelled", "cancelled"]
    # Still max until the period ends.
    assert (await client.get("/v1/user/plan", headers=member.headers)).json()["plan"] == "max"

    listed = await client.get(
        "/v1/admin/redemption-codes", headers=admin.headers, params={"status": "used"}
    )
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["total"] == 4 and page["limit"] == 20 and page["offset"] == 0
    assert {item["redeemed_by"] for item in page["items"]} == {str(member.id)}
    assert all(pro_a not in item["prefix"] or len(item["prefix"]) == 9 for item in page["items"])
    assert pro_a not in listed.text
    unused = await client.get(
        "/v1/admin/redemption-codes", headers=admin.headers, params={"status": "unused"}
    )
    assert unused.json()["total"] == 0


async def test_expired_codes_and_bad_requests(client: httpx.AsyncClient, make_user) -> None:
    admin, member = make_user(is_superuser=True), make_user()
    (code,) = await _codes(client, admin, plan="max", expires_in_days=1)
    with worker_session() as session:
        row = session.scalar(
            select(RedemptionCode).where(RedemptionCode.code_hash == hash_code(code))
        )
        row.expires_at = row.created_at - timedelta(seconds=1)
    expired = await _redeem(client, member, code)
    assert expired.status_code == 409 and expired.json()["code"] == "code_used"
    listed = await client.get(
        "/v1/admin/redemption-codes", headers=admin.headers, params={"status": "expired"}
    )
    assert listed.json()["total"] == 1

    for bad in (
        {"plan": "free", "days": 30, "count": 1},
        {"plan": "pro", "days": 30, "count": 1001},
    ):
        refused = await client.post("/v1/admin/redemption-codes", headers=admin.headers, json=bad)
        assert refused.status_code == 422, refused.text
    nothing = await client.post("/v1/user/subscription/cancel", headers=member.headers)
    assert nothing.status_code == 404 and nothing.json()["code"] == "not_found"


async def test_one_code_redeemed_twice_at_once(client: httpx.AsyncClient, make_user) -> None:
    admin, first, second = make_user(is_superuser=True), make_user(), make_user()
    (code,) = await _codes(client, admin, plan="pro")
    answers = await asyncio.gather(_redeem(client, first, code), _redeem(client, second, code))
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    with worker_session() as session:
        held = session.scalars(select(Subscription.user_id)).all()
        plans = session.scalars(select(User.plan).where(User.id.in_([first.id, second.id]))).all()
    assert len(held) == 1 and sorted(plans) == ["free", "pro"]


async def test_wrong_codes_are_limited(client: httpx.AsyncClient, make_user) -> None:
    member = make_user()
    limit = settings.redeem_max_attempts_per_account
    for attempt in range(limit):
        wrong = await _redeem(client, member, f"SBR-WRONG-{attempt}")
        assert wrong.status_code == 404, wrong.text
    refused = await _redeem(client, member, "SBR-WRONG-X")
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    # Counters of their own: sign-in attempts are untouched.
    assert await client.get("/v1/user/profile", headers=member.headers)


async def test_admin_routes_refuse_members(client: httpx.AsyncClient, make_user) -> None:
    member = make_user(plan="pro")
    calls = [
        ("POST", "/v1/admin/redemption-codes", {"plan": "pro", "days": 30, "count": 1}),
        ("GET", "/v1/admin/redemption-codes", None),
        ("PUT", f"/v1/admin/users/{member.id}/plan", {"plan": "max"}),
    ]
    for method, path, body in calls:
        answer = await client.request(method, path, headers=member.headers, json=body)
        assert answer.status_code == 403, (path, answer.text)
    assert (await client.get("/v1/admin/redemption-codes")).status_code == 401


async def test_admin_plan_change_seen_by_a_key_on_another_process(
    client: httpx.AsyncClient, second_api_server: str, make_user
) -> None:
    admin, member = make_user(is_superuser=True), make_user()
    made = await client.post("/v1/developer/api-keys", headers=member.headers, json={"name": "ci"})
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    async with httpx.AsyncClient(base_url=second_api_server, timeout=30) as replica:
        before = await replica.get("/v1/models", headers=key)
        assert [m["id"] for m in before.json()["data"]] == [
            name for name, _ in listed_models_for_plan("free")
        ]
        changed = await client.put(
            f"/v1/admin/users/{member.id}/plan",
            headers=admin.headers,
            json={"plan": "max", "days": 7},
        )
        assert changed.status_code == 200 and changed.json()["plan"] == "max"
        after = await replica.get("/v1/models", headers=key)
        assert [m["id"] for m in after.json()["data"]] == [
            name for name, _ in listed_models_for_plan("max")
        ]
        sub = (await replica.get("/v1/user/subscription", headers=member.headers)).json()
        assert (sub["plan"], sub["source"], sub["status"]) == ("max", "admin", "active")
        assert _at(sub["current_period_end"]) - _at(sub["current_period_start"]) == timedelta(
            days=7
        )

        freed = await client.put(
            f"/v1/admin/users/{member.id}/plan", headers=admin.headers, json={"plan": "free"}
        )
        assert freed.json()["plan"] == "free"
        back = await replica.get("/v1/models", headers=key)
        assert [m["id"] for m in back.json()["data"]] == [
            name for name, _ in listed_models_for_plan("free")
        ]
        none = (await replica.get("/v1/user/subscription", headers=member.headers)).json()
        assert none["source"] == "default"
