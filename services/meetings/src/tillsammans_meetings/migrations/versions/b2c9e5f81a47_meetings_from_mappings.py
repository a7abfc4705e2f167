"""meetings called from a completed mapping: the mappings' suggestions as announced, the meeting's mapping, and
the roles a received invitation asks for

Revision ID: b2c9e5f81a47
Revises: 3f8a2c6d4b17

Meetings called before have no mapping; mappings completed before this revision were never kept
here and cannot be called from (decision 24).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = 'b2c9e5f81a47'
down_revision = '3f8a2c6d4b17'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'completed_mapping',
        sa.Column('mapping_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('wheel_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('wheel_version', sa.Integer(), nullable=False),
        sa.Column('trappan_step', sa.Integer(), nullable=False),
        sa.Column('flagged_areas', sa.JSON(), nullable=False),
        sa.Column('suggested_orgs', sa.JSON(), nullable=False),
        sa.Column('suggestions', sa.JSON(), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('mapping_id'),
    )
    with op.batch_alter_table('completed_mapping', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_completed_mapping_case_id'), ['case_id'], unique=False)
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mapping_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    with op.batch_alter_table('receivedinvitation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_roles', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('receivedinvitation', schema=None) as batch_op:
        batch_op.drop_column('requested_roles')
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.drop_column('mapping_id')
    with op.batch_alter_table('completed_mapping', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_completed_mapping_case_id'))
    op.drop_table('completed_mapping')
