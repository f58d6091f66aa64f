"""PLUGIN_API_ENCRYPTION_KEY, the integration document's name, is one more Fernet key: it
decrypts what the earlier system stored, and encrypts when ENCRYPTION_KEYS is unset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from core.config import Settings
from core.crypto import fernet_for
from tests.conftest import ROOT

PLUGIN_KEY = Fernet.generate_key().decode()
OURS = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def no_encryption_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test environment sets ENCRYPTION_KEYS for the processes it starts.
    monkeypatch.delenv("ENCRYPTION_KEYS", raising=False)


def settings_with(tmp_path: Path, **values) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg]


def test_with_encryption_keys_it_only_decrypts(tmp_path: Path) -> None:
    config = settings_with(tmp_path, encryption_keys=OURS, plugin_api_encryption_key=PLUGIN_KEY)
    assert config.fernet_keys == [OURS, PLUGIN_KEY]
    fernet = fernet_for(config)
    old_ciphertext = Fernet(PLUGIN_KEY.encode()).encrypt(b"sk-stored-by-the-earlier-system")
    assert fernet.decrypt(old_ciphertext) == b"sk-stored-by-the-earlier-system"
    new = fernet.encrypt(b"sk-new").decode()
    assert Fernet(OURS.encode()).decrypt(new.encode()) == b"sk-new"


def test_without_encryption_keys_it_encrypts_and_the_generated_key_still_decrypts(
    tmp_path: Path,
) -> None:
    before = settings_with(tmp_path, environment="development")
    (generated,) = before.fernet_keys
    stored_earlier = fernet_for(before).encrypt(b"sk-earlier")

    config = settings_with(
        tmp_path, environment="development", plugin_api_encryption_key=PLUGIN_KEY
    )
    assert config.fernet_keys == [PLUGIN_KEY, generated]
    fernet = fernet_for(config)
    assert Fernet(PLUGIN_KEY.encode()).decrypt(fernet.encrypt(b"sk-new")) == b"sk-new"
    assert fernet.decrypt(stored_earlier) == b"sk-earlier"


def test_production_accepts_it_in_place_of_encryption_keys(tmp_path: Path) -> None:
    config = settings_with(
        tmp_path,
        environment="production",
        secret_key="s" * 48,
        plugin_api_encryption_key=PLUGIN_KEY,
    )
    assert config.fernet_keys == [PLUGIN_KEY]
    with pytest.raises(ValidationError, match="ENCRYPTION_KEYS"):
        settings_with(tmp_path, environment="production", secret_key="s" * 48)


def test_a_key_that_is_not_fernet_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="PLUGIN_API_ENCRYPTION_KEY: not a Fernet key"):
        settings_with(tmp_path, plugin_api_encryption_key="not-a-key")


def test_a_process_started_with_only_that_key_encrypts_with_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ENCRYPTION_KEYS"}
    env.update(
        ENVIRONMENT="production",
        SECRET_KEY="s" * 48,
        PLUGIN_API_ENCRYPTION_KEY=PLUGIN_KEY,
        DATA_DIR=str(tmp_path),
    )
    script = "from core.crypto import encrypt_secret; print(encrypt_secret('sk-user-key'))"
    ciphertext = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert Fernet(PLUGIN_KEY.encode()).decrypt(ciphertext.encode()) == b"sk-user-key"
