"""routing by the child's stage: units serve a municipality and ages, have deputies and a confirmation; concerns
record how they were routed and the one wheel their areas are of

Revision ID: 9c4e7a2f1d58
Revises: 6d1f3b8e2a94

Units that existed before are kept with the ages their kind serves (decision 20), no municipality
(so the routing rules never choose them until an admin or an import gives one) and no
confirmation (so they are on the stale list until someone confirms them).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '9c4e7a2f1d58'
down_revision = '6d1f3b8e2a94'
branch_labels = None
depends_on = None

# The ages each kind served by default when this revision was written (routing.KIND_AGES).
_AGES = {'PRESCHOOL': (1, 5), 'CHILD_HEALTH': (0, 5), 'SCHOOL': (6, 15), 'UPPER_SECONDARY': (16, 19),
         'KAA': (16, 19), 'OTHER': (0, 19)}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The kind is stored by name; on SQLite it is a plain string with room for the new one.
        op.execute("ALTER TYPE unitkind ADD VALUE IF NOT EXISTS 'INTAKE_DESK'")
    with op.batch_alter_table('unit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('municipality_code', sqlmodel.sql.sqltypes.AutoString(length=4), nullable=True))
        batch_op.add_column(sa.Column('min_age', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('max_age', sa.Integer(), nullable=False, server_default='19'))
        batch_op.add_column(sa.Column('deputies', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='api'))
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
    for kind, (low, high) in _AGES.items():
        # Literals, not parameters: PostgreSQL compares an untyped literal with its enum, not a varchar.
        op.execute(f"UPDATE unit SET min_age = {low}, max_age = {high} WHERE kind = '{kind}'")  # noqa: S608 (constants)
    with op.batch_alter_table('concern', schema=None) as batch_op:
        # Concerns raised before this revision named their unit and flagged areas of the Sörmland wheel.
        batch_op.add_column(sa.Column('routed_by', sa.String(length=32), nullable=False,
                                      server_default='named_unit'))
        batch_op.add_column(sa.Column('wheel_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                      server_default='sormland'))


def downgrade() -> None:
    with op.batch_alter_table('concern', schema=None) as batch_op:
        batch_op.drop_column('wheel_id')
        batch_op.drop_column('routed_by')
    with op.batch_alter_table('unit', schema=None) as batch_op:
        batch_op.drop_column('confirmed_at')
        batch_op.drop_column('source')
        batch_op.drop_column('deputies')
        batch_op.drop_column('max_age')
        batch_op.drop_column('min_age')
        batch_op.drop_column('municipality_code')
