"""orosanmälan: reports filed here, reports received (social services), the mappings of each case; the concern's
home municipality

Revision ID: 3f71da081431
Revises: 2b7e5d9c4a13
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '3f71da081431'
down_revision = '2b7e5d9c4a13'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('case_mapping',
    sa.Column('mapping_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('wheel_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('flagged_areas', sa.JSON(), nullable=False),
    sa.Column('completed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('mapping_id')
    )
    with op.batch_alter_table('case_mapping', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_mapping_case_id'), ['case_id'], unique=False)

    op.create_table('received_report',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('from_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('report_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('municipality_code', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
    sa.Column('child_personnummer', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('child_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('protected_identity', sa.Boolean(), nullable=False),
    sa.Column('grounds', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('wheel_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('wheel_areas', sa.JSON(), nullable=False),
    sa.Column('reporting_unit', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('reported_by_role', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('contact_user', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('legal_basis', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('filed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('from_org', 'report_id', name='uq_received_report_sender_id')
    )
    with op.batch_alter_table('received_report', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_received_report_child_personnummer'), ['child_personnummer'], unique=False)

    op.create_table('statutory_report',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('concern_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('mapping_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('to_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('municipality_code', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
    sa.Column('grounds', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('wheel_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('wheel_areas', sa.JSON(), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('legal_basis', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('filed_by_user', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('filed_by_role', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('envelope_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('filed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('receiver_reference', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('statutory_report', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_statutory_report_case_id'), ['case_id'], unique=False)

    with op.batch_alter_table('concern', schema=None) as batch_op:
        batch_op.add_column(sa.Column('home_municipality', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('concern', schema=None) as batch_op:
        batch_op.drop_column('home_municipality')
    with op.batch_alter_table('statutory_report', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_statutory_report_case_id'))
    op.drop_table('statutory_report')
    with op.batch_alter_table('received_report', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_received_report_child_personnummer'))
    op.drop_table('received_report')
    with op.batch_alter_table('case_mapping', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_mapping_case_id'))
    op.drop_table('case_mapping')
