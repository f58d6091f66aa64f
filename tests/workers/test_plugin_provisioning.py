"""Provisioning of plug-in-api accounts by the real worker: outages, give-up, re-queue, races."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from core.celery_app import celery_app
from core.crypto import decrypt_secret, encrypt_secret
from core.plugin_accounts import provision_journal_key
from core.redis import sync_redis
from tests.api.test_plugin_api import register, stored_account, wait_for_account
from tests.conftest import ServiceProcess
from tests.fakes.plugin_api import FakePluginApi


async def test_plugin_api_down_at_registration_then_the_retry_provisions(
    client: httpx.AsyncClient, celery_worker: ServiceProcess, fake_plugin_api: FakePluginApi
) -> None:
    fake_plugin_api.stop()
    started = time.monotonic()
    user_id, headers = await register(client, "early@example.com")
    assert time.monotonic() - started < 5

    deadline = time.monotonic() + 20
    while (account := stored_account(user_id)) is None or account.attempts < 1:
        assert time.monotonic() < deadline, "the first attempt never ran"
        await asyncio.sleep(0.05)
    assert account.status == "pending"
    assert account.last_error.startswith("plug-in-api unreachable")
    assert (await client.get("/v1/plugin-api/key", headers=headers)).json()["status"] == "pending"
    refused = await client.get("/v1/plugin-api/accounts", headers=headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "plugin_account_pending"

    fake_plugin_api.start()
    account = await wait_for_account(user_id, "active")
    assert account.last_error is None
    assert len(fake_plugin_api.seen_at("POST", "/api/users")) == 1
    assert (await client.get("/v1/plugin-api/accounts", headers=headers)).status_code == 200


async def test_gives_up_after_bounded_tries_and_the_requeue_recovers(
    client: httpx.AsyncClient,
    celery_worker: ServiceProcess,
    fake_plugin_api: FakePluginApi,
    make_user,
) -> None:
    fake_plugin_api.create_failures = 1000
    user_id, _ = await register(client, "unlucky@example.com")
    # Made without the sign-up hook: the re-queue must find users that have no account at all.
    orphan = make_user()

    account = await wait_for_account(user_id, "failed")
    assert account.attempts == 5
    assert account.last_error == "plug-in-api answered POST /api/users with 500"
    assert len(fake_plugin_api.seen_at("POST", "/api/users")) == 5
    assert stored_account(orphan.id) is None

    fake_plugin_api.create_failures = 0
    celery_app.send_task("workers.plugin.requeue_stuck")
    await wait_for_account(user_id, "active")
    orphan_account = await wait_for_account(orphan.id, "active")
    assert (
        orphan_account.plugin_user_id
        == fake_plugin_api.user_named(f"switchboard-{orphan.id}").user_id
    )
    assert len(fake_plugin_api.seen_at("POST", "/api/users")) == 7


async def test_concurrent_jobs_create_one_upstream_user(
    celery_worker: ServiceProcess, fake_plugin_api: FakePluginApi, make_user
) -> None:
    user = make_user()
    # Slow enough that every job arrives while the first is still inside the upstream call.
    fake_plugin_api.create_delay = 1.0
    for _ in range(4):
        celery_app.send_task("workers.plugin.provision", args=[str(user.id)])
    account = await wait_for_account(user.id, "active")
    assert len(fake_plugin_api.seen_at("POST", "/api/users")) == 1
    assert account.plugin_user_id == fake_plugin_api.user_named(f"switchboard-{user.id}").user_id

    # A job for an account that is already active leaves plug-in-api alone.
    fake_plugin_api.create_delay = 0
    celery_app.send_task("workers.plugin.provision", args=[str(user.id)])
    celery_app.send_task("workers.plugin.requeue_stuck")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert len(fake_plugin_api.seen_at("POST", "/api/users")) == 1
        await asyncio.sleep(0.1)
    assert stored_account(user.id).attempts == 1


async def test_an_account_made_before_a_failed_commit_is_taken_from_the_journal(
    celery_worker: ServiceProcess, fake_plugin_api: FakePluginApi, make_user
) -> None:
    user = make_user()
    # What a job leaves when plug-in-api made the account and our commit then failed.
    upstream = fake_plugin_api.add_user(f"switchboard-{user.id}")
    journal = json.dumps({"plugin_user_id": upstream.user_id, "api_key": upstream.api_key})
    sync_redis().set(provision_journal_key(user.id), encrypt_secret(journal))

    celery_app.send_task("workers.plugin.provision", args=[str(user.id)])
    account = await wait_for_account(user.id, "active")
    assert fake_plugin_api.seen_at("POST", "/api/users") == []
    assert account.plugin_user_id == upstream.user_id
    assert decrypt_secret(account.api_key_encrypted) == upstream.api_key
    assert sync_redis().get(provision_journal_key(user.id)) is None
