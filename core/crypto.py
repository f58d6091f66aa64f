"""Secrets at rest: MultiFernet over ENCRYPTION_KEYS (the first key encrypts, all decrypt)."""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, MultiFernet

from core.config import settings


@cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.encryption_keys])


def encrypt_secret(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str) -> str:
    return _fernet().decrypt(ciphertext.encode()).decode()


def reencrypt_secret(ciphertext: str) -> str:
    """Re-encrypt with the first key; a no-op in meaning, a rotation in storage."""
    return _fernet().rotate(ciphertext.encode()).decode()
