"""outbox rows name their destination, so the relay loads and backs off per destination

Revision ID: 8f3b6c1d2e70
Revises: 5c2d9a7e31b4
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '8f3b6c1d2e70'
down_revision = '5c2d9a7e31b4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('destination', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
    # Rows already queued get the destination the relay used to derive from the subject: the stream for
    # this organisation's own events, 'inbox.<receiver>' for another's. Subjects are few (receiver x
    # sender x type), so this is one UPDATE per distinct inbox subject, not per row.
    outbox = sa.table('outbox_message', sa.column('stream', sa.String), sa.column('nats_subject', sa.String),
                      sa.column('destination', sa.String))
    bind = op.get_bind()
    bind.execute(sa.update(outbox).where(outbox.c.stream != 'INBOX').values(destination=outbox.c.stream))
    subjects = bind.execute(sa.select(outbox.c.nats_subject).where(outbox.c.stream == 'INBOX').distinct()).scalars()
    for subject in list(subjects):
        bind.execute(sa.update(outbox).where(outbox.c.stream == 'INBOX', outbox.c.nats_subject == subject)
                     .values(destination='.'.join(subject.split('.')[:2])))
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.alter_column('destination', existing_type=sqlmodel.sql.sqltypes.AutoString(length=128),
                              nullable=False)
        batch_op.drop_index('ix_outbox_unsent')
        batch_op.create_index('ix_outbox_pending', ['published_at', 'withheld_at', 'destination', 'seq'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending')
        batch_op.create_index('ix_outbox_unsent', ['published_at', 'seq'], unique=False)
        batch_op.drop_column('destination')
