"""mapping suggestions: each suggested organisation with its kind, the roles to invite and the areas calling for it

Revision ID: e4b7c2a9d153
Revises: 5b8e1d4c7a36

Mappings completed before keep only suggested_orgs; their suggestions stay empty (decision 24).
"""

import sqlalchemy as sa
from alembic import op

revision = 'e4b7c2a9d153'
down_revision = '5b8e1d4c7a36'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mapping', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suggestions', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mapping', schema=None) as batch_op:
        batch_op.drop_column('suggestions')
