"""subscriptions and redemption codes

`subscriptions` (a plan for a period; at most one `active` per user) and
`redemption_codes` (stored as a SHA-256 with a display prefix). `users.plan` stays:
it is the cached plan that core/subscriptions.py sets with every subscription change.
Existing paid users keep their plan without a subscription until an admin or a code
gives them one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:23:12.983434
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('redemption_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('plan', sa.String(length=16), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('redeemed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('redeemed_by', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("plan IN ('pro', 'max')", name=op.f('ck_redemption_codes_plan')),
    sa.CheckConstraint('days > 0', name=op.f('ck_redemption_codes_days')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_redemption_codes_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['redeemed_by'], ['users.id'], name=op.f('fk_redemption_codes_redeemed_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemption_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_redemption_codes_code_hash'))
    )
    op.create_index('ix_redemption_codes_created_at', 'redemption_codes', ['created_at'], unique=False)
    op.create_index(op.f('ix_redemption_codes_redeemed_by'), 'redemption_codes', ['redeemed_by'], unique=False)
    op.create_table('subscriptions',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('plan', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('price', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('billing_cycle', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('current_period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('current_period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_at_period_end', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('redemption_code_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("billing_cycle IN ('monthly', 'yearly')", name=op.f('ck_subscriptions_billing_cycle')),
    sa.CheckConstraint("plan IN ('free', 'pro', 'max')", name=op.f('ck_subscriptions_plan')),
    sa.CheckConstraint("source IN ('admin', 'code')", name=op.f('ck_subscriptions_source')),
    sa.CheckConstraint("status IN ('active', 'pending', 'cancelled', 'expired')", name=op.f('ck_subscriptions_status')),
    sa.CheckConstraint('current_period_end > current_period_start', name=op.f('ck_subscriptions_period')),
    sa.ForeignKeyConstraint(['redemption_code_id'], ['redemption_codes.id'], name=op.f('fk_subscriptions_redemption_code_id_redemption_codes'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_subscriptions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    op.create_index('ix_subscriptions_active_period_end', 'subscriptions', ['current_period_end'], unique=False, postgresql_where=sa.text("status = 'active'"))
    op.create_index(op.f('ix_subscriptions_user_id'), 'subscriptions', ['user_id'], unique=False)
    op.create_index('uq_subscriptions_user_id_active', 'subscriptions', ['user_id'], unique=True, postgresql_where=sa.text("status = 'active'"))


def downgrade() -> None:
    op.drop_index('uq_subscriptions_user_id_active', table_name='subscriptions', postgresql_where=sa.text("status = 'active'"))
    op.drop_index(op.f('ix_subscriptions_user_id'), table_name='subscriptions')
    op.drop_index('ix_subscriptions_active_period_end', table_name='subscriptions', postgresql_where=sa.text("status = 'active'"))
    op.drop_table('subscriptions')
    op.drop_index(op.f('ix_redemption_codes_redeemed_by'), table_name='redemption_codes')
    op.drop_index('ix_redemption_codes_created_at', table_name='redemption_codes')
    op.drop_table('redemption_codes')
