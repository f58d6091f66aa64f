"""Document 001 (the AI-Hub developer platform) as its client uses it: JSON register and
login, `auth/me`, `auth/logout`, API keys, usage, the demo reset (404 in production),
`developer/chat` streamed and not (real tokens and cost) and `developer/models`."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from core.config import settings
from core.db import worker_session
from core.plans import listed_models_for_plan
from models import UsageRecord
from tests.conftest import start_api
from tests.fakes.openai_protocol import expected_reply

pytestmark = pytest.mark.usefixtures("celery_worker")

PASSWORD = "strongpassword123"
USER_FIELDS = {
    "id",
    "email",
    "full_name",
    "plan",
    "monthly_quota",
    "quota_used",
    "quota_remaining",
    "is_active",
    "created_at",
}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _records(user_id: uuid.UUID | str) -> list[UsageRecord]:
    with worker_session() as session:
        return list(
            session.scalars(
                select(UsageRecord).where(UsageRecord.user_id == uuid.UUID(str(user_id)))
            )
        )


async def _api_key(client: httpx.AsyncClient, user) -> dict:
    created = await client.post(
        "/api/v1/developer/api-keys",
        json={"name": "Production API Key", "description": "prod", "rate_limit": 100},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    return created.json()


async def test_register_login_me_and_logout(client: httpx.AsyncClient) -> None:
    email = f"hub-{uuid.uuid4().hex[:8]}@example.com"
    registered = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "John Doe"},
    )
    assert registered.status_code == 201, registered.text
    body = registered.json()
    assert body["token_type"] == "bearer" and body["access_token"]
    user = body["user"]
    assert USER_FIELDS <= user.keys()
    assert user["email"] == email and user["full_name"] == "John Doe"
    assert user["plan"] == "free" and user["quota_used"] == 0
    assert (
        user["monthly_quota"] == user["quota_remaining"] == settings.plans["free"].monthly_requests
    )

    login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()
    assert token["user"]["id"] == user["id"] and token["token_type"] == "bearer"
    wrong = await client.post("/api/v1/auth/login", json={"email": email, "password": "wrong-one"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials"

    me = await client.get("/api/v1/auth/me", headers=_bearer(token["access_token"]))
    assert me.status_code == 200 and me.json()["id"] == user["id"]
    assert USER_FIELDS <= me.json().keys()

    out = await client.post("/api/v1/auth/logout", headers=_bearer(token["access_token"]))
    assert out.status_code == 200 and set(out.json()) == {"message"}
    # That session's tokens are dead; the one opened at register still lives.
    after = await client.get("/api/v1/auth/me", headers=_bearer(token["access_token"]))
    assert after.status_code == 401 and after.json()["code"] == "token_invalid"
    dead = await client.post("/api/v1/auth/refresh", json={"refresh_token": token["refresh_token"]})
    assert dead.status_code == 401
    other = await client.get("/api/v1/auth/me", headers=_bearer(body["access_token"]))
    assert other.status_code == 200


async def test_enterprise_is_the_name_of_max(client: httpx.AsyncClient, make_user) -> None:
    user = make_user(plan="max")
    me = (await client.get("/api/v1/auth/me", headers=user.headers)).json()
    assert me["plan"] == "enterprise"
    assert me["monthly_quota"] == settings.plans["max"].monthly_requests
    current = (await client.get("/api/v1/developer/usage/current", headers=user.headers)).json()
    assert current["plan"] == "enterprise"
    pro = make_user(plan="pro")
    assert (await client.get("/api/v1/auth/me", headers=pro.headers)).json()["plan"] == "pro"


async def test_api_keys_list_and_revoke(client: httpx.AsyncClient, make_user) -> None:
    user = make_user()
    created = await _api_key(client, user)
    assert created["key"].startswith("sk-sb-") and created["rate_limit"] == 100
    assert created["key_prefix"] == created["key"][:12] and created["is_expired"] is False
    listed = await client.get("/api/v1/developer/api-keys", headers=user.headers)
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()] == [created["id"]]
    assert "key" not in listed.json()[0]

    key = _bearer(created["key"])
    assert (await client.get("/api/v1/developer/usage/current", headers=key)).status_code == 200
    revoked = await client.delete(
        f"/api/v1/developer/api-keys/{created['id']}", headers=user.headers
    )
    assert revoked.status_code == 204
    refused = await client.get("/api/v1/developer/usage/current", headers=key)
    assert refused.status_code == 401
    again = await client.delete(f"/api/v1/developer/api-keys/{created['id']}", headers=user.headers)
    assert again.status_code == 404 and again.json()["code"] == "not_found"


async def test_chat_answers_with_billed_tokens_and_cost(
    client: httpx.AsyncClient, make_user
) -> None:
    user = make_user()
    created = await _api_key(client, user)
    message = "Hello, how are you? [[tag=hub-plain tokens=7 prompt_tokens=30]]"
    answer = await client.post(
        "/api/v1/developer/chat",
        json={"message": message, "model": "grok-beta", "stream": False},
        headers=_bearer(created["key"]),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"response", "model", "tokens_used", "cost"}
    assert body["response"] == expected_reply(message)
    # An unknown model is the plan's default.
    assert body["model"] == settings.plans["free"].default_model
    [record] = _records(user.id)
    assert str(record.api_key_id) == created["id"]
    assert record.prompt_tokens == 30 and record.completion_tokens == 7
    assert body["tokens_used"] == record.prompt_tokens + record.completion_tokens
    assert isinstance(body["cost"], float) and body["cost"] > 0
    assert Decimal(str(body["cost"])) == record.cost.normalize()

    history = await client.get(
        "/api/v1/developer/usage/history", params={"days": 7}, headers=user.headers
    )
    assert history.status_code == 200, history.text
    days = history.json()
    assert len(days["daily_usage"]) == 7 and days["total_requests"] == 1
    assert isinstance(days["total_cost"], float) and days["total_cost"] == body["cost"]
    assert all(isinstance(day["cost"], int | float) for day in days["daily_usage"])
    assert days["daily_usage"][-1]["prompt_tokens"] == 30


async def test_chat_streams_data_lines_then_done(client: httpx.AsyncClient, make_user) -> None:
    user = make_user(plan="pro")
    message = "Tell me a story [[tag=hub-stream tokens=9]]"
    # `stream` is true unless the client says otherwise.
    async with client.stream(
        "POST", "/api/v1/developer/chat", json={"message": message}, headers=user.headers
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in answer.aiter_lines()]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert "".join(data[:-1]) == expected_reply(message)
    [record] = _records(user.id)
    assert record.model == settings.plans["pro"].default_model
    assert record.completion_tokens == 9 and record.cost > 0


async def test_chat_refuses_a_model_beyond_the_plan(client: httpx.AsyncClient, make_user) -> None:
    user = make_user()
    refused = await client.post(
        "/api/v1/developer/chat",
        json={"message": "hi", "model": "claude-opus-5-5", "stream": False},
        headers=user.headers,
    )
    assert refused.status_code == 403 and refused.json()["code"] == "model_not_allowed"
    assert _records(user.id) == []


async def test_models_mark_what_the_free_plan_may_use(client: httpx.AsyncClient, make_user) -> None:
    user = make_user(plan="pro")
    created = await _api_key(client, user)
    answer = await client.get("/api/v1/developer/models", headers=_bearer(created["key"]))
    assert answer.status_code == 200, answer.text
    models = {m["id"]: m for m in answer.json()["models"]}
    assert list(models) == [name for name, _ in listed_models_for_plan("pro")]
    assert set(models["deepseek-flash"]) == {"id", "name", "provider", "type", "free"}
    assert models["deepseek-flash"]["free"] is True
    assert models["deepseek-chat"]["free"] is True  # an alias of a free model
    assert models["kimi-k2.6"]["free"] is False
    assert models["kimi-k2.6"]["name"] == settings.models["kimi-k2.6"].display_name
    assert models["kimi-k2.6"]["provider"] == "kimi"
    assert {m["type"] for m in models.values()} == {"chat"}


async def test_reset_demo_sets_the_used_quota_back(client: httpx.AsyncClient, make_user) -> None:
    user = make_user()
    chat = await client.post(
        "/api/v1/developer/chat",
        json={"message": "count me [[tag=hub-reset tokens=2]]", "stream": False},
        headers=user.headers,
    )
    assert chat.status_code == 200, chat.text
    current = (await client.get("/api/v1/developer/usage/current", headers=user.headers)).json()
    assert current["quota_used"] == 1
    reset = await client.post("/api/v1/developer/usage/reset-demo", headers=user.headers)
    assert reset.status_code == 200, reset.text
    assert reset.json()["quota_used"] == 0
    assert reset.json()["quota_total"] == settings.plans["free"].monthly_requests
    current = (await client.get("/api/v1/developer/usage/current", headers=user.headers)).json()
    assert current["quota_used"] == 0 and current["quota_remaining"] == current["quota_total"]


def test_reset_demo_is_not_found_in_production(service_env: dict[str, str], make_user) -> None:
    env = {**service_env, "ENVIRONMENT": "production", "TRUSTED_PROXIES": "127.0.0.1"}
    server, base_url = start_api(env)
    user = make_user()
    https = {"X-Forwarded-Proto": "https"}
    try:
        answer = httpx.post(
            base_url + "/api/v1/developer/usage/reset-demo",
            headers={**user.headers, **https},
            timeout=10,
        )
        assert answer.status_code == 404
        assert answer.json() == {"detail": "Not Found", "code": "not_found"}
        anonymous = httpx.post(
            base_url + "/api/v1/developer/usage/reset-demo", headers=https, timeout=10
        )
        assert anonymous.status_code == 404
        schema = httpx.get(base_url + "/openapi.json", headers=https, timeout=10).json()
        assert "/api/v1/developer/usage/reset-demo" not in schema["paths"]
        assert "/api/v1/developer/chat" in schema["paths"]
        # The rest of the document's routes stay.
        me = httpx.get(base_url + "/api/v1/auth/me", headers={**user.headers, **https}, timeout=10)
        assert me.status_code == 200, me.text
    finally:
        server.stop()


def test_a_text_with_line_breaks_stays_one_event() -> None:
    from api.compat.ai_hub import _data_lines

    # SSE joins an event's `data:` lines with LF: a client reads the text back whole.
    assert _data_lines("one\ntwo\r\nthree") == b"data: one\ndata: two\ndata: three\n\n"
    assert _data_lines("plain ") == b"data: plain \n\n"
