"""the child's municipality on each service's copy of a case, so suggestions name the members serving it

Revision ID: d8a3f61c0b92
Revises: d3a9f6b2c8e4

Cases recorded before it have no municipality; their suggestions name every member of a kind
until intake records the case again (decision 24).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = 'd8a3f61c0b92'
down_revision = 'd3a9f6b2c8e4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('municipality_code', sqlmodel.sql.sqltypes.AutoString(length=4),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.drop_column('municipality_code')
