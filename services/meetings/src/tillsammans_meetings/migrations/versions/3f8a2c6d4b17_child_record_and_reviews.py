"""the child's record (protected identity), four-eyes reviews of disclosures, a consultation's own case

Revision ID: 3f8a2c6d4b17
Revises: af578f711652
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '3f8a2c6d4b17'
down_revision = 'af578f711652'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('consultation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.create_table('child_record',
    sa.Column('child_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('protected_identity', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('child_key')
    )
    op.create_table('disclosure_review',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('meeting_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('reviewed_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('decision', sa.Enum('approve', 'reject', name='reviewdecision', native_enum=False, length=32),
              nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['meeting_id'], ['meeting.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('disclosure_review', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disclosure_review_meeting_id'), ['meeting_id'], unique=False)


def downgrade() -> None:
    op.drop_table('disclosure_review')
    op.drop_table('child_record')
    with op.batch_alter_table('consultation', schema=None) as batch_op:
        batch_op.drop_column('case_id')
