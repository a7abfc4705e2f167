"""each service's copy of the organisation's cases and delegations (the unit of access)

Revision ID: c5e2a8d4b6f1
Revises: a7d1e0c3f5b2
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = 'c5e2a8d4b6f1'
down_revision = 'a7d1e0c3f5b2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'case_record',
        sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('unit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('bba_user', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('child_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('protected_identity', sa.Boolean(), nullable=False),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('case_id'),
    )
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_record_unit_id'), ['unit_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_record_bba_user'), ['bba_user'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_record_child_key'), ['child_key'], unique=False)
    op.create_table(
        'case_delegation',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('delegate_user', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('granted_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
        sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('case_delegation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_delegation_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_delegation_delegate_user'), ['delegate_user'], unique=False)


def downgrade() -> None:
    op.drop_table('case_delegation')
    op.drop_table('case_record')
