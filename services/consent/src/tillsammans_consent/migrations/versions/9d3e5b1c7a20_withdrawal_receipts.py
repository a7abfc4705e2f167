"""withdrawal receipts from receivers

Revision ID: 9d3e5b1c7a20
Revises: 7a41c0d9e2f3
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '9d3e5b1c7a20'
down_revision = '7a41c0d9e2f3'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('withdrawal_receipt',
    sa.Column('consent_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('receiving_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('purged_records', sa.Integer(), nullable=False),
    sa.Column('purged_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consent_id'], ['consent.id'], ),
    sa.PrimaryKeyConstraint('consent_id', 'receiving_org')
    )


def downgrade() -> None:
    op.drop_table('withdrawal_receipt')
