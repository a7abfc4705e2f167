"""one case per child: the child's identity in case_child, concerns join the child's case

Revision ID: 6d1f3b8e2a94
Revises: 4e020717f545

Concerns raised before this revision each kept a case of their own and are not joined into
cases here (the child key a case needs is keyed with the organisation's secret, which a migration
does not hold); there were no deployments before it.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '6d1f3b8e2a94'
down_revision = '4e020717f545'
branch_labels = None
depends_on = ('c5e2a8d4b6f1',)


def upgrade() -> None:
    op.create_table(
        'case_child',
        sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('child_personnummer', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column('child_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint('case_id'),
        sa.UniqueConstraint('child_personnummer'),
    )
    with op.batch_alter_table('concern', schema=None) as batch_op:
        batch_op.drop_index('ix_concern_case_id')
        batch_op.create_index('ix_concern_case_id', ['case_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('concern', schema=None) as batch_op:
        batch_op.drop_index('ix_concern_case_id')
        batch_op.create_index('ix_concern_case_id', ['case_id'], unique=True)
    op.drop_table('case_child')
