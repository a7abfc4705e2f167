"""index the timestamps that pruning reads, so each batch is a seek rather than a scan of the table

Revision ID: b7d41e9a6c25
Revises: 8f3b6c1d2e70
"""

from alembic import op


revision = 'b7d41e9a6c25'
down_revision = '8f3b6c1d2e70'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('processed_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_processed_message_processed_at'), ['processed_at'], unique=False)
    with op.batch_alter_table('idempotency_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_record_created_at'), ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('idempotency_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_record_created_at'))
    with op.batch_alter_table('processed_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_processed_message_processed_at'))
