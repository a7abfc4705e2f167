"""case transfers: a case handed over from one unit and BBA to another, with who, when and why

Revision ID: 2b7e5d9c4a13
Revises: 9c4e7a2f1d58
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '2b7e5d9c4a13'
down_revision = '9c4e7a2f1d58'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'case_transfer',
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('from_unit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('to_unit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('from_bba_user', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('to_bba_user', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column('transferred_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('transferred_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('case_transfer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_transfer_case_id'), ['case_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('case_transfer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_transfer_case_id'))
    op.drop_table('case_transfer')
