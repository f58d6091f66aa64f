"""reasoning and cache usage

What a thinking model's reply leaves: `messages.reasoning` (its thinking text),
`messages.provider_blocks` (Anthropic's signed thinking blocks, which a later tool-use
turn must send back unchanged), and the reasoning and cached token counts on messages,
generations and usage records (with cache writes, which Anthropic bills apart); and a
user's default `reasoning_effort`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('messages', sa.Column('reasoning', sa.Text(), nullable=True))
    op.add_column('messages', sa.Column('reasoning_tokens', sa.Integer(), nullable=True))
    op.add_column('messages', sa.Column('cached_tokens', sa.Integer(), nullable=True))
    op.add_column(
        'messages',
        sa.Column('provider_blocks', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column('generations', sa.Column('reasoning_tokens', sa.Integer(), nullable=True))
    op.add_column('generations', sa.Column('cached_tokens', sa.Integer(), nullable=True))
    for column in ('cached_tokens', 'cache_write_tokens', 'reasoning_tokens'):
        op.add_column(
            'usage_records',
            sa.Column(column, sa.Integer(), server_default='0', nullable=False),
        )
    op.add_column('user_ai_config', sa.Column('reasoning_effort', sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column('user_ai_config', 'reasoning_effort')
    for column in ('reasoning_tokens', 'cache_write_tokens', 'cached_tokens'):
        op.drop_column('usage_records', column)
    op.drop_column('generations', 'cached_tokens')
    op.drop_column('generations', 'reasoning_tokens')
    op.drop_column('messages', 'provider_blocks')
    op.drop_column('messages', 'cached_tokens')
    op.drop_column('messages', 'reasoning_tokens')
    op.drop_column('messages', 'reasoning')
