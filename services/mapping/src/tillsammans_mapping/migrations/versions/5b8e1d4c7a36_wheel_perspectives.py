"""wheel perspectives: an assessment per area and perspective, its level a code of the wheel's own scale

Revision ID: 5b8e1d4c7a36
Revises: 086214b9cf34

Existing assessments become the professional's; their levels keep their meaning as codes of the
concern scale the packaged wheels state (the enum stored the names, e.g. SOME_CONCERN).
"""

import sqlalchemy as sa
from alembic import op

revision = '5b8e1d4c7a36'
down_revision = '086214b9cf34'
branch_labels = None
depends_on = None

LEVELS = ('NO_CONCERN', 'SOME_CONCERN', 'SERIOUS_CONCERN', 'UNKNOWN')
CONCERN_LEVEL = sa.Enum(*LEVELS, name='concernlevel')


def upgrade() -> None:
    with op.batch_alter_table('area_assessment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('perspective', sa.String(length=16), nullable=False,
                                      server_default='professional'))
        batch_op.alter_column('level', existing_type=CONCERN_LEVEL, type_=sa.String(length=32),
                              existing_nullable=False, postgresql_using='level::text')
        batch_op.drop_constraint('uq_area_assessment_mapping_area', type_='unique')
        batch_op.create_unique_constraint('uq_area_assessment_mapping_area_perspective',
                                          ['mapping_id', 'area_code', 'perspective'])
    op.execute("UPDATE area_assessment SET level = lower(level)")
    CONCERN_LEVEL.drop(op.get_bind(), checkfirst=True)  # PostgreSQL's named type; SQLite has none


def downgrade() -> None:
    # The child's and guardians' views and levels of other scales have no place in the old table.
    op.execute("DELETE FROM area_assessment WHERE perspective <> 'professional'")
    op.execute("DELETE FROM area_assessment WHERE level NOT IN "
               "('no_concern', 'some_concern', 'serious_concern', 'unknown')")
    op.execute("UPDATE area_assessment SET level = upper(level)")
    CONCERN_LEVEL.create(op.get_bind(), checkfirst=True)
    with op.batch_alter_table('area_assessment', schema=None) as batch_op:
        batch_op.drop_constraint('uq_area_assessment_mapping_area_perspective', type_='unique')
        batch_op.create_unique_constraint('uq_area_assessment_mapping_area', ['mapping_id', 'area_code'])
        batch_op.alter_column('level', existing_type=sa.String(length=32), type_=CONCERN_LEVEL,
                              existing_nullable=False, postgresql_using='level::concernlevel')
        batch_op.drop_column('perspective')
