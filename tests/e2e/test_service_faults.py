"""Backing services failing under a running API: Redis restarted (and emptied), and
PostgreSQL stopped. Each test runs its own server and its own API (and worker), so
the session-wide ones never see the outage."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import httpx
import pytest

from cli.embedded import EmbeddedPostgres, EmbeddedRedis
from cli.migrate import upgrade_database
from tests.conftest import start_api, start_worker
from tests.fakes.openai_protocol import expected_reply

pytestmark = pytest.mark.slow

RECOVERY_SECONDS = 10


def _completion(content: str) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": content}]}


async def _until_ok(client: httpx.AsyncClient, path: str, headers: dict, bound: float) -> float:
    """Seconds until `path` answers 200; fails past `bound`."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        try:
            if (await client.get(path, headers=headers)).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    pytest.fail(f"{path} did not recover within {bound} s")


@pytest.fixture
def own_redis(tmp_path: Path):
    server = EmbeddedRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_redis_restarted_under_traffic(own_redis: EmbeddedRedis, service_env, make_user):
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    # PostgreSQL's durable count: what a restarted, empty Redis must start from.
    user = make_user(
        quota_period_start_at=start, quota_reset_at=start + timedelta(days=30), quota_used=40
    )
    env = {**service_env, "REDIS_URL": own_redis.url(0), "BROKER_URL": own_redis.url(1)}
    api, base_url = start_api(env)
    worker = start_worker(env, name="redis-fault", concurrency=4)
    # (when the request was sent, its status)
    statuses: list[tuple[float, int]] = []
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            answer = await client.post(
                "/v1/chat/completions", json=_completion("[[tokens=3]]"), headers=user.headers
            )
            assert answer.status_code == 200, answer.text
            usage = await client.get("/v1/developer/usage/current", headers=user.headers)
            assert usage.json()["quota_used"] == 41

            stop = asyncio.Event()

            async def traffic() -> None:
                while not stop.is_set():
                    sent = time.monotonic()
                    try:
                        answer = await client.get(
                            "/v1/developer/usage/current", headers=user.headers
                        )
                        statuses.append((sent, answer.status_code))
                        if answer.status_code == 503:
                            body = answer.json()
                            assert body["code"] == "unavailable", body
                            assert "Traceback" not in answer.text
                    except httpx.TransportError:
                        statuses.append((sent, 0))
                    await asyncio.sleep(0.05)

            load = asyncio.create_task(traffic())
            await asyncio.sleep(0.3)
            # Restarted empty: the counters, streams and queues are gone.
            own_redis.stop()
            shutil.rmtree(own_redis.dir)
            await asyncio.sleep(1.5)
            down = await client.post(
                "/v1/chat/completions", json=_completion("[[tokens=3]]"), headers=user.headers
            )
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "unavailable"
            own_redis.start()
            recovered = await _until_ok(
                client, "/v1/developer/usage/current", user.headers, RECOVERY_SECONDS
            )
            recovered_at = time.monotonic()
            # Requests sent during the outage may still be retrying; judge those sent after.
            await asyncio.sleep(1)
            stop.set()
            await load
            assert recovered < RECOVERY_SECONDS
            codes = [status for _, status in statuses]
            assert 503 in codes and set(codes) <= {200, 503}, codes
            after = [status for sent, status in statuses if sent > recovered_at]
            assert after and set(after) == {200}, after

            # Re-seeded from PostgreSQL (40), not restarted at zero; the worker is back too.
            content = "[[tag=after-restart tokens=4]]"
            for _ in range(60):
                answer = await client.post(
                    "/v1/chat/completions", json=_completion(content), headers=user.headers
                )
                if answer.status_code != 503:
                    break
                await asyncio.sleep(0.5)
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"] == expected_reply(content)
            usage = await client.get("/v1/developer/usage/current", headers=user.headers)
            assert usage.json()["quota_used"] == 41
    finally:
        worker.stop()
        api.stop()


@pytest.fixture
def own_postgres(tmp_path: Path):
    server = EmbeddedPostgres(tmp_path)
    server.start()
    upgrade_database(server.url())
    yield server
    server.stop()


async def test_postgres_stopped(own_postgres: EmbeddedPostgres, service_env):
    env = {**service_env, "DATABASE_URL": own_postgres.url()}
    api, base_url = start_api(env)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            tokens = await client.post(
                "/v1/auth/register",
                json={"email": "pg-fault@example.org", "password": "a-long-password"},
            )
            assert tokens.status_code == 201, tokens.text
            headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
            assert (await client.get("/v1/user/profile", headers=headers)).status_code == 200

            own_postgres.stop()
            for path in ("/v1/user/profile", "/v1/conversations", "/readyz"):
                answer = await client.get(path, headers=headers)
                assert answer.status_code == 503, (path, answer.text)
                assert "Traceback" not in answer.text and "psycopg" not in answer.text
            body = (await client.get("/v1/user/profile", headers=headers)).json()
            assert body["code"] == "unavailable"

            own_postgres.start()
            assert await _until_ok(client, "/v1/user/profile", headers, RECOVERY_SECONDS) < 10
    finally:
        api.stop()
