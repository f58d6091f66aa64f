"""The signed-in user's profile, email, password, plan and chat defaults; admin routes and the
create-superuser command."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from core.db import worker_session
from core.plans import listed_models_for_plan
from core.quota import add_month
from models import ModelConfig, User
from tests.conftest import ROOT

PASSWORD = "correct horse battery"


async def sign_up(client: httpx.AsyncClient, email: str) -> dict:
    answer = await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 201, answer.text
    return answer.json()


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def test_profile_updates_only_what_the_user_may_change(client: httpx.AsyncClient) -> None:
    pair = await sign_up(client, "lin@example.com")
    other = await sign_up(client, "other@example.com")

    sneaky = await client.put(
        "/v1/user/profile", headers=bearer(pair), json={"plan": "max", "is_superuser": True}
    )
    assert sneaky.status_code == 422
    assert sneaky.json()["code"] == "validation_error"
    for body in ({"bio": "b" * 2001}, {"avatar_url": "javascript:alert(1)"}, {"username": "a b"}):
        answer = await client.put("/v1/user/profile", headers=bearer(pair), json=body)
        assert answer.status_code == 422, body

    taken = await client.put(
        "/v1/user/profile",
        headers=bearer(pair),
        json={"username": other["user"]["username"].upper(), "bio": "not saved"},
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "username_taken"

    updated = await client.put(
        "/v1/user/profile",
        headers=bearer(pair),
        json={"username": "lin_w", "full_name": "Lin W", "bio": "hi", "avatar_url": None},
    )
    assert updated.status_code == 200, updated.text
    assert {k: updated.json()[k] for k in ("username", "full_name", "bio", "plan")} == {
        "username": "lin_w",
        "full_name": "Lin W",
        "bio": "hi",
        "plan": "free",
    }
    with worker_session() as session:
        stored = session.get(User, uuid.UUID(pair["user"]["id"]))
        assert (stored.plan, stored.is_superuser, stored.bio) == ("free", False, "hi")


async def test_email_change_needs_the_password_and_a_free_address(
    client: httpx.AsyncClient,
) -> None:
    pair = await sign_up(client, "mover@example.com")
    await sign_up(client, "occupied@example.com")
    wrong = await client.post(
        "/v1/user/email",
        headers=bearer(pair),
        json={"email": "new@example.com", "current_password": "not it"},
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_credentials"
    taken = await client.post(
        "/v1/user/email",
        headers=bearer(pair),
        json={"email": "Occupied@Example.com", "current_password": PASSWORD},
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "email_taken"
    moved = await client.post(
        "/v1/user/email",
        headers=bearer(pair),
        json={"email": "New@Example.com", "current_password": PASSWORD},
    )
    assert moved.status_code == 200
    assert moved.json()["email"] == "new@example.com"
    login = await client.post(
        "/v1/auth/login", json={"email": "new@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200


async def test_password_change_ends_every_other_session(client: httpx.AsyncClient) -> None:
    phone = await sign_up(client, "pw@example.com")
    laptop = (
        await client.post("/v1/auth/login", json={"email": "pw@example.com", "password": PASSWORD})
    ).json()

    wrong = await client.post(
        "/v1/user/password",
        headers=bearer(laptop),
        json={"current_password": "nope", "new_password": "another long one"},
    )
    assert wrong.status_code == 401
    short = await client.post(
        "/v1/user/password",
        headers=bearer(laptop),
        json={"current_password": PASSWORD, "new_password": "tiny-pw"},
    )
    assert short.status_code == 422
    assert "tiny-pw" not in short.text

    changed = await client.post(
        "/v1/user/password",
        headers=bearer(laptop),
        json={"current_password": PASSWORD, "new_password": "another long one"},
    )
    assert changed.status_code == 204
    assert (await client.get("/v1/user/profile", headers=bearer(laptop))).status_code == 200
    dead = await client.get("/v1/user/profile", headers=bearer(phone))
    assert dead.status_code == 401
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert refresh.status_code == 401

    old = await client.post(
        "/v1/auth/login", json={"email": "pw@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    new = await client.post(
        "/v1/auth/login", json={"email": "pw@example.com", "password": "another long one"}
    )
    assert new.status_code == 200


def _listed(plan: str) -> list[str]:
    """What the plan may name: its catalogue models, then their aliases."""
    return [name for name, _ in listed_models_for_plan(plan)]


async def test_plan_and_ai_config(client: httpx.AsyncClient, make_user) -> None:
    # The durable count re-seeds the live Redis counter, which this test's Redis lacks.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    user = make_user(
        plan="pro", quota_used=40, quota_period_start_at=start, quota_reset_at=add_month(start)
    )
    plan = await client.get("/v1/user/plan", headers=user.headers)
    assert plan.status_code == 200
    assert plan.json() == {
        "quota_reset_at": add_month(start).isoformat().replace("+00:00", "Z"),
        "plan": "pro",
        "monthly_quota": 100_000,
        "quota_used": 40,
        "quota_remaining": 99_960,
        "rpm": 60,
        "max_api_keys": 20,
        "models": _listed("pro"),
    }
    new_user = await sign_up(client, "fresh@example.com")
    fresh_plan = (await client.get("/v1/user/plan", headers=bearer(new_user))).json()
    assert fresh_plan["quota_reset_at"] is not None

    empty = await client.get("/v1/user/ai-config", headers=user.headers)
    assert empty.json() == {
        "default_model": None,
        "model_config_id": None,
        "system_prompt": None,
        "temperature": None,
        "reasoning_effort": None,
    }
    too_high = await client.put(
        "/v1/user/ai-config",
        headers=user.headers,
        json={"default_model": "claude-3-5-sonnet-latest"},
    )
    assert too_high.status_code == 403
    assert too_high.json()["code"] == "model_not_allowed"

    stranger = make_user()
    with worker_session() as session:
        foreign = ModelConfig(
            user_id=stranger.id,
            name="theirs",
            base_url="https://x.example",
            model="m",
            api_key_encrypted="x",
            api_key_hint="x",
        )
        session.add(foreign)
        session.flush()
        foreign_id = foreign.id
    not_yours = await client.put(
        "/v1/user/ai-config", headers=user.headers, json={"model_config_id": str(foreign_id)}
    )
    assert not_yours.status_code == 404
    assert not_yours.json()["code"] == "not_found"

    wanted = {
        "default_model": "moonshot-v1-32k",
        "model_config_id": None,
        "system_prompt": "Be brief.",
        "temperature": 0.3,
        "reasoning_effort": "low",
    }
    saved = await client.put("/v1/user/ai-config", headers=user.headers, json=wanted)
    assert saved.status_code == 200, saved.text
    assert (await client.get("/v1/user/ai-config", headers=user.headers)).json() == wanted
    hot = await client.put("/v1/user/ai-config", headers=user.headers, json={"temperature": 3})
    assert hot.status_code == 422
    unknown = await client.put(
        "/v1/user/ai-config", headers=user.headers, json={"reasoning_effort": "extreme"}
    )
    assert unknown.status_code == 422


async def test_a_model_the_plan_may_not_use_is_one_answer(
    client: httpx.AsyncClient, make_user
) -> None:
    """The ai-config route and a chat turn refuse a model alike: 403 `model_not_allowed`,
    for a model above the plan and for one the catalogue does not have (API.md)."""
    user = make_user(plan="free")
    for model in ("moonshot-v1-32k", "no-such-model"):
        config = await client.put(
            "/v1/user/ai-config", headers=user.headers, json={"default_model": model}
        )
        assert config.status_code == 403, model
        assert config.json()["code"] == "model_not_allowed"
    conversation = await client.post("/v1/conversations", headers=user.headers, json={})
    turn = await client.post(
        f"/v1/conversations/{conversation.json()['id']}/chat",
        headers=user.headers,
        json={"content": "hi", "model": "no-such-model"},
    )
    assert turn.status_code == 403
    assert turn.json()["code"] == "model_not_allowed"


async def test_admin_routes_and_the_superuser_command(
    client: httpx.AsyncClient, service_env: dict[str, str], make_user
) -> None:
    member = make_user()
    forbidden = await client.get(f"/v1/admin/users/{member.id}", headers=member.headers)
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] == "forbidden"

    made = subprocess.run(
        [sys.executable, "-m", "cli", "create-superuser", "--email", "Root@Example.com"],
        cwd=ROOT,
        env={**service_env, "SUPERUSER_PASSWORD": "root password 1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("created superuser")
    with worker_session() as session:
        root = session.scalar(select(User).where(User.email == "root@example.com"))
        assert root is not None and root.is_superuser
    login = await client.post(
        "/v1/auth/login", json={"email": "root@example.com", "password": "root password 1"}
    )
    admin = bearer(login.json())

    seen = await client.get(f"/v1/admin/users/{member.id}", headers=admin)
    assert seen.status_code == 200
    assert seen.json()["plan"] == "free"
    created = await client.post(
        "/v1/developer/api-keys", headers=member.headers, json={"name": "ci"}
    )
    key = {"Authorization": f"Bearer {created.json()['key']}"}

    async def key_models() -> list[str]:
        return [m["id"] for m in (await client.get("/v1/models", headers=key)).json()["data"]]

    # The first use caches the key's identity, plan included.
    assert await key_models() == _listed("free")
    upgraded = await client.put(
        f"/v1/admin/users/{member.id}/plan", headers=admin, json={"plan": "max"}
    )
    assert upgraded.status_code == 200
    assert upgraded.json()["plan"] == "max"
    plan = await client.get("/v1/user/plan", headers=member.headers)
    assert plan.json()["plan"] == "max"
    assert _listed("max") != _listed("free")
    assert await key_models() == _listed("max")
    bogus = await client.put(
        f"/v1/admin/users/{member.id}/plan", headers=admin, json={"plan": "platinum"}
    )
    assert bogus.status_code == 422
    missing = await client.get(f"/v1/admin/users/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404
