"""a consent is keyed by its discloser and its id: the same id from another member is another consent

Revision ID: d3a9f6b2c8e4
Revises: c5e2a8d4b6f1

The table is rebuilt rather than altered: SQLite cannot change a primary key in place, and one way
for both databases keeps the two schemas the same. Every existing row keeps its values (ids were
unique on their own before, so they are unique with their discloser too).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = 'd3a9f6b2c8e4'
down_revision = 'c5e2a8d4b6f1'
branch_labels = None
depends_on = None

COLUMNS = ("consent_id, case_id, child_key, disclosing_org, receiving_orgs, categories, purpose, valid_from, "
           "valid_until, withdrawn_at")


def _create(name: str, *key: str, key_name: str) -> None:
    op.create_table(
        name,
        sa.Column('consent_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('child_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('disclosing_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('receiving_orgs', sa.JSON(), nullable=False),
        sa.Column('categories', sa.JSON(), nullable=False),
        sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
        sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint(*key, name=key_name),
    )


def _rebuild(*key: str, key_name: str) -> None:
    # The key is named for the table it ends up as (PostgreSQL keeps the name through the rename).
    _create('consent_grant_rebuilt', *key, key_name=key_name)
    op.execute(f"INSERT INTO consent_grant_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM consent_grant")  # noqa: S608 - fixed names
    op.drop_index('ix_consent_lookup', table_name='consent_grant')
    op.drop_table('consent_grant')
    op.rename_table('consent_grant_rebuilt', 'consent_grant')
    op.create_index('ix_consent_lookup', 'consent_grant', ['child_key', 'disclosing_org'], unique=False)


def upgrade() -> None:
    _rebuild('consent_id', 'disclosing_org', key_name='pk_consent_grant')


def downgrade() -> None:
    # Fails if two disclosers used the same id, which only the new key allows: that is the point.
    _rebuild('consent_id', key_name='consent_grant_pkey')
