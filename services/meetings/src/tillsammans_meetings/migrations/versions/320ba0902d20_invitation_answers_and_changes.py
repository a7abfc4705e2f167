"""answers, reschedules and cancels of invitations; a meeting's room and sequence (decision 25)

Revision ID: 320ba0902d20
Revises: b2c9e5f81a47
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '320ba0902d20'
down_revision = 'b2c9e5f81a47'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answer', sa.Enum('accepted', 'declined', name='answer', native_enum=False, length=32), nullable=True))
        batch_op.add_column(sa.Column('answer_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
        batch_op.add_column(sa.Column('participants', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reply_sequence', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.add_column(sa.Column('location', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('sequence', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cancel_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))

    with op.batch_alter_table('receivedinvitation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('location', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('sequence', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('answer', sa.Enum('accepted', 'declined', name='answer', native_enum=False, length=32), nullable=True))
        batch_op.add_column(sa.Column('answer_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
        batch_op.add_column(sa.Column('participants', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('answered_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch_op.add_column(sa.Column('reply_sequence', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('receivedinvitation', schema=None) as batch_op:
        batch_op.drop_column('reply_sequence')
        batch_op.drop_column('answered_by')
        batch_op.drop_column('answered_at')
        batch_op.drop_column('participants')
        batch_op.drop_column('answer_reason')
        batch_op.drop_column('answer')
        batch_op.drop_column('cancelled_at')
        batch_op.drop_column('sequence')
        batch_op.drop_column('location')

    with op.batch_alter_table('meeting', schema=None) as batch_op:
        batch_op.drop_column('cancel_reason')
        batch_op.drop_column('cancelled_at')
        batch_op.drop_column('sequence')
        batch_op.drop_column('location')

    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.drop_column('reply_sequence')
        batch_op.drop_column('answered_at')
        batch_op.drop_column('participants')
        batch_op.drop_column('answer_reason')
        batch_op.drop_column('answer')
