"""disclosure decisions and consent versions

Revision ID: 7a41c0d9e2f3
Revises: 0b10a648e209
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '7a41c0d9e2f3'
down_revision = '0b10a648e209'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
    op.create_table('disclosure_decision',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('phase', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('consent_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('consent_version', sa.Integer(), nullable=True),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('receiving_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('requested_role', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('trace_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('outcome', sa.Enum('PERMIT', 'DENY', name='decisionoutcome'), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('settlement', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('disclosure_decision', schema=None) as batch_op:
        batch_op.create_index('ix_decision_open_leases', ['consent_id', 'settled_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_disclosure_decision_decided_at'), ['decided_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_disclosure_decision_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_disclosure_decision_case_id'), ['case_id'], unique=False)


def downgrade() -> None:
    op.drop_table('disclosure_decision')
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.drop_column('version')
