"""Model configs through the real API: SSRF guard, key never returned, rotation."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from core.config import settings
from core.db import worker_session
from models import ModelConfig
from tests.conftest import ROOT


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080/v1",
        "http://10.1.2.3/v1",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:11434/v1",  # a name that resolves to loopback
        "http://2130706433/v1",  # decimal spelling of 127.0.0.1
        "http://0x7f000001/v1",  # hex spelling of 127.0.0.1
        "http://[::ffff:127.0.0.1]/v1",
        "http://100.64.0.1/v1",
        "file:///etc/passwd",
        "gopher://example.com/",
    ],
)
async def test_private_and_non_http_base_urls_are_refused(client, make_user, base_url):
    user = make_user()
    answer = await client.post(
        "/v1/model-configs",
        json={"base_url": base_url, "model": "m", "api_key": "sk-abcdefgh"},
        headers=user.headers,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "validation_error"
    assert (await client.get("/v1/model-configs", headers=user.headers)).json() == []


async def test_crud_never_returns_the_key_and_other_users_get_404(client, make_user):
    owner, other = make_user(), make_user()
    secret = "sk-live-please-never-echo-me-42"
    created = await client.post(
        "/v1/model-configs",
        json={"name": "mine", "base_url": "https://1.1.1.1/v1", "model": "m", "api_key": secret},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    config = created.json()
    assert set(config) == {
        "id",
        "name",
        "base_url",
        "model",
        "api_key_hint",
        "created_at",
        "updated_at",
    }
    assert config["api_key_hint"] == "e-42"
    path = f"/v1/model-configs/{config['id']}"
    for method in ("PUT", "DELETE"):
        answer = await client.request(
            method, path, json={"name": "x"} if method == "PUT" else None, headers=other.headers
        )
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    updated = await client.put(path, json={"model": "m2"}, headers=owner.headers)
    assert updated.json()["model"] == "m2" and updated.json()["api_key_hint"] == "e-42"
    bad = await client.put(path, json={"base_url": "http://10.0.0.1"}, headers=owner.headers)
    assert bad.status_code == 422
    listing = await client.get("/v1/model-configs", headers=owner.headers)
    for text in (created.text, updated.text, bad.text, listing.text):
        assert secret not in text
    with worker_session() as session:
        stored = session.scalars(select(ModelConfig)).one()
        assert secret not in stored.api_key_encrypted
    assert (await client.delete(path, headers=owner.headers)).status_code == 204


async def test_rotate_keys_reencrypts_with_the_first_key(client, make_user, service_env):
    user = make_user()
    created = await client.post(
        "/v1/model-configs",
        json={"base_url": "https://1.1.1.1/v1", "model": "m", "api_key": "sk-rotate-me-1234"},
        headers=user.headers,
    )
    assert created.status_code == 201
    old_first, old_second = settings.encryption_keys
    new_key = Fernet.generate_key().decode()
    env = {**service_env, "ENCRYPTION_KEYS": ",".join([new_key, old_first, old_second])}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "rotate-keys"], cwd=ROOT, env=env, capture_output=True
    )
    assert result.returncode == 0, result.stderr
    with worker_session() as session:
        ciphertext = session.scalars(select(ModelConfig.api_key_encrypted)).one()
    assert Fernet(new_key.encode()).decrypt(ciphertext.encode()) == b"sk-rotate-me-1234"
    # Rewritten under the new first key: the old key alone no longer reads it.
    with pytest.raises(InvalidToken):
        Fernet(old_first.encode()).decrypt(ciphertext.encode())
    assert b"sk-rotate-me-1234" not in result.stdout + result.stderr
