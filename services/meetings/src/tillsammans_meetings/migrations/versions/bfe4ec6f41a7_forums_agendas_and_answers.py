"""recurring forums (RRULE), their agendas of anonymous consultations, and answers to consultations (decision 0027)

Revision ID: bfe4ec6f41a7
Revises: 78fc93679237
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = 'bfe4ec6f41a7'
down_revision = '78fc93679237'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('forum',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sa.Enum('elevhalsoteam', 'barnhalsogrupp', 'other', name='forumkind', native_enum=False, length=32), nullable=False),
    sa.Column('unit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('member_orgs', sa.JSON(), nullable=False),
    sa.Column('rrule', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('location', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('received_forum',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('from_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sa.Enum('elevhalsoteam', 'barnhalsogrupp', 'other', name='forumkind', native_enum=False, length=32), nullable=False),
    sa.Column('member_orgs', sa.JSON(), nullable=False),
    sa.Column('rrule', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('location', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('agenda_item',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('forum_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('occurrence_date', sa.Date(), nullable=False),
    sa.Column('consultation_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('put_to', sa.JSON(), nullable=False),
    sa.Column('placed_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultation.id'], ),
    sa.ForeignKeyConstraint(['forum_id'], ['forum.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('forum_id', 'occurrence_date', 'consultation_id', name='uq_agenda_item')
    )
    with op.batch_alter_table('agenda_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agenda_item_consultation_id'), ['consultation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agenda_item_forum_id'), ['forum_id'], unique=False)

    op.create_table('given_answer',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('consultation_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('to_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sa.Enum('advice', 'can_help', name='answerkind', native_enum=False, length=32), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('answered_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['receivedconsultation.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('given_answer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_given_answer_consultation_id'), ['consultation_id'], unique=False)

    op.create_table('received_agenda_item',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('forum_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('from_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('occurrence_date', sa.Date(), nullable=False),
    sa.Column('consultation_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['forum_id'], ['received_forum.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('received_agenda_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_received_agenda_item_consultation_id'), ['consultation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_received_agenda_item_forum_id'), ['forum_id'], unique=False)

    op.create_table('received_answer',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('consultation_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('from_org', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sa.Enum('advice', 'can_help', name='answerkind', native_enum=False, length=32), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultation.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('received_answer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_received_answer_consultation_id'), ['consultation_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('received_answer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_received_answer_consultation_id'))

    op.drop_table('received_answer')
    with op.batch_alter_table('received_agenda_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_received_agenda_item_forum_id'))
        batch_op.drop_index(batch_op.f('ix_received_agenda_item_consultation_id'))

    op.drop_table('received_agenda_item')
    with op.batch_alter_table('given_answer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_given_answer_consultation_id'))

    op.drop_table('given_answer')
    with op.batch_alter_table('agenda_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agenda_item_forum_id'))
        batch_op.drop_index(batch_op.f('ix_agenda_item_consultation_id'))

    op.drop_table('agenda_item')
    op.drop_table('received_forum')
    op.drop_table('forum')
