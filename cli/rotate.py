"""`python -m cli rotate-keys`: re-encrypt every stored secret with the first ENCRYPTION_KEYS key.

Run it after putting a new key first in ENCRYPTION_KEYS (old keys after it);
once it finishes, the old keys can be dropped.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy import select

from core.crypto import reencrypt_secret
from core.db import worker_session
from models import ModelConfig, PluginAccount

BATCH = 500

SecretHolder = TypeVar("SecretHolder", ModelConfig, PluginAccount)


def rotate_secrets() -> int:
    """Re-encrypt model-config and plug-in-api keys in batches; the count of secrets."""
    return _rotate(ModelConfig) + _rotate(PluginAccount)


def _rotate(model: type[SecretHolder]) -> int:
    count = 0
    last_id: uuid.UUID | None = None
    column = model.api_key_encrypted
    while True:
        with worker_session() as session:
            query = select(model).where(column.is_not(None)).order_by(model.id).limit(BATCH)
            if last_id is not None:
                query = query.where(model.id > last_id)
            rows = session.scalars(query.with_for_update()).all()
            for row in rows:
                # Always set: the query skips rows without a key.
                if row.api_key_encrypted is not None:
                    row.api_key_encrypted = reencrypt_secret(row.api_key_encrypted)
            count += len(rows)
        if len(rows) < BATCH:
            return count
        last_id = rows[-1].id
