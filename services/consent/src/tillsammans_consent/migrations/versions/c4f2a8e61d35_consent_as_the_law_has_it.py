"""consent as the law has it: the GDPR legal basis, revisions linked by amendment, the follow-up purpose

Revision ID: c4f2a8e61d35
Revises: 9d3e5b1c7a20
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = 'c4f2a8e61d35'
down_revision = '9d3e5b1c7a20'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The enums are stored by name; on SQLite they are plain strings with room for the new names.
        op.execute("ALTER TYPE consentpurpose ADD VALUE IF NOT EXISTS 'FOLLOW_UP'")
        op.execute("ALTER TYPE historyaction ADD VALUE IF NOT EXISTS 'AMENDED'")
    with op.batch_alter_table('consent', schema=None) as batch_op:
        # Consents recorded before this change rested on the organisations' public task (Art. 6(1)(e)).
        batch_op.add_column(sa.Column('legal_basis', sa.String(length=32), nullable=False,
                                      server_default='public_task'))
        batch_op.add_column(sa.Column('legal_basis_note', sqlmodel.sql.sqltypes.AutoString(length=500),
                                      nullable=True))
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('amends', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('amended_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_consent_amends'), ['amends'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_amends'))
        batch_op.drop_column('amended_by')
        batch_op.drop_column('amends')
        batch_op.drop_column('revision')
        batch_op.drop_column('legal_basis_note')
        batch_op.drop_column('legal_basis')
