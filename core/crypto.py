"""Secrets at rest: MultiFernet over `settings.fernet_keys` (ENCRYPTION_KEYS, and
PLUGIN_API_ENCRYPTION_KEY as one more key): the first key encrypts, all decrypt."""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, MultiFernet

from core.config import Settings, settings


def fernet_for(config: Settings) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in config.fernet_keys])


@cache
def _fernet() -> MultiFernet:
    return fernet_for(settings)


def encrypt_secret(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str) -> str:
    return _fernet().decrypt(ciphertext.encode()).decode()


def reencrypt_secret(ciphertext: str) -> str:
    """Re-encrypt with the first key; a no-op in meaning, a rotation in storage."""
    return _fernet().rotate(ciphertext.encode()).decode()
