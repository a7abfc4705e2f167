"""indexes for the follow-up scheduler's pass: meetings by kind, plan items by due date

Revision ID: c7d2e9a4f5b1
Revises: bfe4ec6f41a7
"""

from alembic import op

revision = 'c7d2e9a4f5b1'
down_revision = 'bfe4ec6f41a7'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.create_index('ix_meeting_kind', ['kind'], unique=False)
    with op.batch_alter_table('planitem', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_planitem_due'), ['due'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('planitem', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_planitem_due'))
    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.drop_index('ix_meeting_kind')
