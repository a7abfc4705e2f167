"""outbox rows of identifying messages carry their consent question; refused ones are withheld

Revision ID: 5c2d9a7e31b4
Revises: e1e0e274e14a
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '5c2d9a7e31b4'
down_revision = 'e1e0e274e14a'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gate', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('withheld_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('withheld_reason', sqlmodel.sql.sqltypes.AutoString(length=255),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_column('withheld_reason')
        batch_op.drop_column('withheld_at')
        batch_op.drop_column('gate')
