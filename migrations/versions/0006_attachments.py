"""attachments

Uploaded images (`attachments`: owner, sniffed mime type, size, sha256 and the bytes)
and the join table that lists a user message's images in order
(`message_attachments`). Both cascade: a user's deletion takes their images, a
message's deletion its links; the orphan sweep removes images nothing refers to.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
# Re-chained after 0005 (subscriptions) when both branches are merged.
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'attachments',
        sa.Column('user_id', sa.Uuid(), nullable=False),
        sa.Column('mime_type', sa.String(length=32), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('bytes', sa.LargeBinary(), nullable=False),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column(
            'created_at',
            sa.DateTime(timezone=True),
            server_default=sa.text('now()'),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ['user_id'],
            ['users.id'],
            name=op.f('fk_attachments_user_id_users'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments')),
    )
    op.create_index(
        'ix_attachments_user_id_created_at', 'attachments', ['user_id', 'created_at']
    )
    op.create_table(
        'message_attachments',
        sa.Column('message_id', sa.BigInteger(), nullable=False),
        sa.Column('attachment_id', sa.Uuid(), nullable=False),
        sa.Column('position', sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ['attachment_id'],
            ['attachments.id'],
            name=op.f('fk_message_attachments_attachment_id_attachments'),
            ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['message_id'],
            ['messages.id'],
            name=op.f('fk_message_attachments_message_id_messages'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint(
            'message_id', 'attachment_id', name=op.f('pk_message_attachments')
        ),
    )
    op.create_index(
        op.f('ix_message_attachments_attachment_id'),
        'message_attachments',
        ['attachment_id'],
    )


def downgrade() -> None:
    op.drop_index(
        op.f('ix_message_attachments_attachment_id'), table_name='message_attachments'
    )
    op.drop_table('message_attachments')
    op.drop_index('ix_attachments_user_id_created_at', table_name='attachments')
    op.drop_table('attachments')
