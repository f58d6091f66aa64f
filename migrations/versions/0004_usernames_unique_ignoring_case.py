"""usernames unique ignoring case

Usernames become Unicode (API.md: letters and digits of any script, `_`, `.`, `-`,
NFKC-normalised) and unique case-insensitively: the plain unique constraint gives way to
a unique index on lower(username). The API already refused case variants, so existing
rows satisfy it; the upgrade fails, naming them, if a race ever let two in.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-18 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        'uq_users_username_lower', 'users', [sa.text('lower(username)')], unique=True
    )
    op.drop_constraint(op.f('uq_users_username'), 'users', type_='unique')


def downgrade() -> None:
    op.create_unique_constraint(op.f('uq_users_username'), 'users', ['username'])
    op.drop_index('uq_users_username_lower', table_name='users')
