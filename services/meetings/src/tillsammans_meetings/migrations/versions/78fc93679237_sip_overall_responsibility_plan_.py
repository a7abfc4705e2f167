"""SIP: overall responsibility, plan versions and shares, plan item status, follow-up meetings, overdue, received plans

Revision ID: 78fc93679237
Revises: 320ba0902d20
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '78fc93679237'
down_revision = '320ba0902d20'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('received_plan',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('from_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('consent_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('scheduled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('child_personnummer', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('child_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('protected_identity', sa.Boolean(), nullable=False),
    sa.Column('child_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('coordinator_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('coordinator_user', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('overall_responsible_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('follow_up_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('status', sa.Enum('received', 'withdrawn', name='receivedstatus', native_enum=False, length=32),
              nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('received_plan', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_received_plan_consent_id'), ['consent_id'], unique=False)

    # Existing meetings and items get defaults: version 0 (nothing to share yet), items planned.
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.add_column(sa.Column('overall_responsible_org', sqlmodel.sql.sqltypes.AutoString(length=32),
                                      nullable=True))
        batch_op.add_column(sa.Column('plan_version', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('plan_shared_version', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('plan_shares', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('follow_up_of', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('follow_up_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('held_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_meeting_follow_up_of'), ['follow_up_of'], unique=False)

    with op.batch_alter_table('planitem', schema=None) as batch_op:
        batch_op.add_column(sa.Column('responsible_party', sqlmodel.sql.sqltypes.AutoString(length=200),
                                      nullable=True))
        batch_op.add_column(sa.Column('responsible_person', sqlmodel.sql.sqltypes.AutoString(length=128),
                                      nullable=True))
        batch_op.add_column(sa.Column('status', sa.Enum('planned', 'in_progress', 'done', 'cancelled',
                                                        name='planitemstatus', native_enum=False, length=32),
                                      nullable=False, server_default='planned'))
        batch_op.add_column(sa.Column('status_changed_by', sqlmodel.sql.sqltypes.AutoString(length=160),
                                      nullable=True))
        batch_op.add_column(sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('planitem', schema=None) as batch_op:
        batch_op.drop_column('overdue_at')
        batch_op.drop_column('status_changed_at')
        batch_op.drop_column('status_changed_by')
        batch_op.drop_column('status')
        batch_op.drop_column('responsible_person')
        batch_op.drop_column('responsible_party')

    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_meeting_follow_up_of'))
        batch_op.drop_column('overdue_at')
        batch_op.drop_column('held_at')
        batch_op.drop_column('follow_up_id')
        batch_op.drop_column('follow_up_of')
        batch_op.drop_column('plan_shares')
        batch_op.drop_column('plan_shared_version')
        batch_op.drop_column('plan_version')
        batch_op.drop_column('overall_responsible_org')

    with op.batch_alter_table('received_plan', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_received_plan_consent_id'))
    op.drop_table('received_plan')
