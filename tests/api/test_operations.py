"""The API skeleton: health, readiness, metrics, the error envelope, HTTPS enforcement."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.conftest import ROOT, start_api


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "broker": "ok"}


async def test_errors_use_the_envelope_and_carry_a_request_id(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found", "code": "not_found"}
    assert len(missing.headers["x-request-id"]) == 32

    wrong_method = await client.delete("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"

    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"


async def test_metrics_count_requests_by_route(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    body = (await client.get("/metrics")).text
    assert 'switchboard_http_requests_total{method="GET",route="/healthz",status="200"}' in body
    assert "switchboard_http_request_duration_seconds_bucket" in body


def test_readiness_names_the_dependency_that_is_down(service_env: dict[str, str]) -> None:
    # Port 9 (discard) has no listener on loopback: a closed PostgreSQL and Redis.
    env = {
        **service_env,
        "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:9/none",
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "BROKER_URL": "redis://127.0.0.1:9/1",
    }
    server, base_url = start_api(env)
    try:
        answer = httpx.get(base_url + "/readyz", timeout=20)
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
        checks = answer.json()["checks"]
        assert all(checks[name].startswith("down") for name in ("postgres", "redis", "broker"))
    finally:
        server.stop()


def test_production_requires_secrets() -> None:
    env = {"ENVIRONMENT": "production", "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-c", "import core.config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "SECRET_KEY and ENCRYPTION_KEYS must be set when ENVIRONMENT=production" in run.stderr


def test_production_enforces_https_behind_trusted_proxies(service_env: dict[str, str]) -> None:
    env = {**service_env, "ENVIRONMENT": "production", "TRUSTED_PROXIES": "127.0.0.1"}
    server, base_url = start_api(env)
    try:
        plain = httpx.get(base_url + "/v1/anything", timeout=10)
        assert plain.status_code == 403
        assert plain.json() == {"detail": "HTTPS is required.", "code": "https_required"}
        proxied = httpx.get(
            base_url + "/v1/anything", headers={"X-Forwarded-Proto": "https"}, timeout=10
        )
        assert proxied.status_code == 404
        # Probes stay reachable over plain HTTP.
        assert httpx.get(base_url + "/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
    untrusted = {**env, "TRUSTED_PROXIES": "10.1.2.3"}
    server, base_url = start_api(untrusted)
    try:
        spoofed = httpx.get(
            base_url + "/v1/anything", headers={"X-Forwarded-Proto": "https"}, timeout=10
        )
        assert spoofed.status_code == 403
    finally:
        server.stop()
