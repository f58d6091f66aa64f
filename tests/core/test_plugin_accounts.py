"""The one definition of a usable plug-in-api account (core/plugin_accounts.py)."""

from __future__ import annotations

import uuid

from core.plugin_accounts import ACTIVE, FAILED, PENDING, UsableAccount, usable
from models import PluginAccount


def account(**fields: object) -> PluginAccount:
    values: dict[str, object] = {
        "user_id": uuid.uuid4(),
        "status": ACTIVE,
        "plugin_user_id": "u-1",
        "api_key_encrypted": "sealed",
        **fields,
    }
    return PluginAccount(**values)


def test_only_a_provisioned_account_with_its_id_and_key_is_usable() -> None:
    assert usable(account()) == UsableAccount("u-1", "sealed")
    assert usable(None) is None
    for status in (PENDING, FAILED):
        assert usable(account(status=status)) is None
    assert usable(account(plugin_user_id=None)) is None
    assert usable(account(api_key_encrypted=None)) is None
