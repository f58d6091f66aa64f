"""status checks

CHECK constraints on `generations.status` and `messages.status`: exactly the values of
core/lifecycle.py's GenerationStatus and MessageStatus at this revision (the models build
the same text from those enums; `alembic check` does not compare CHECK constraints).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_check_constraint(
        op.f('ck_generations_status'),
        'generations',
        "status IN ('queued', 'running', 'done', 'failed', 'cancelled')",
    )
    op.create_check_constraint(
        op.f('ck_messages_status'),
        'messages',
        "status IN ('complete', 'failed', 'cancelled')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f('ck_messages_status'), 'messages', type_='check')
    op.drop_constraint(op.f('ck_generations_status'), 'generations', type_='check')
