"""audit trail: basis, refusal reason, unit, record, protected flag, service and principal; review indexes;
append-only in the database (decision 18)

Revision ID: a7d1e0c3f5b2
Revises: b7d41e9a6c25
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = 'a7d1e0c3f5b2'
down_revision = 'b7d41e9a6c25'
branch_labels = None
depends_on = None

# The legal floor (five years and a day for leap years), not the configured retention: the database refuses to
# lose a younger record whatever a setting, a bug or a SQL client asks. The pruner only deletes records past
# audit_retention_days, which settings refuse below this floor.
MINIMUM_RETENTION_DAYS = 1827

_COLUMNS = (
    ('unit_id', 64), ('record_id', 64), ('basis', 32), ('reason', 32), ('service', 32), ('units', 255),
)

# NOTE for later migrations: a SQLite batch_alter_table of audit_record recreates the table and drops these
# triggers; such a migration must create them again (call _create_triggers).
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_record_no_update BEFORE UPDATE ON audit_record "
    "BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE refused'); END",
    # SQLite stores the UTC time as 'YYYY-MM-DD HH:MM:SS.ffffff', which sorts like datetime()'s text.
    "CREATE TRIGGER audit_record_no_early_delete BEFORE DELETE ON audit_record "
    f"WHEN old.at >= datetime('now', '-{MINIMUM_RETENTION_DAYS} days') "
    "BEGIN SELECT RAISE(ABORT, 'audit records younger than the retention floor cannot be deleted'); END",
)
_POSTGRES_TRIGGERS = (
    f"""CREATE FUNCTION audit_record_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'audit records are append-only: UPDATE refused';
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'audit records are append-only: TRUNCATE refused';
    END IF;
    IF OLD.at >= now() - interval '{MINIMUM_RETENTION_DAYS} days' THEN
        RAISE EXCEPTION 'audit records younger than the retention floor cannot be deleted';
    END IF;
    RETURN OLD;
END $$""",
    "CREATE TRIGGER audit_record_append_only BEFORE UPDATE OR DELETE ON audit_record "
    "FOR EACH ROW EXECUTE FUNCTION audit_record_append_only()",
    "CREATE TRIGGER audit_record_no_truncate BEFORE TRUNCATE ON audit_record "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_record_append_only()",
)


def _create_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for statement in {'sqlite': _SQLITE_TRIGGERS, 'postgresql': _POSTGRES_TRIGGERS}.get(dialect, ()):
        op.execute(statement)


def _drop_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        op.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_record_no_early_delete")
    elif dialect == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_record_no_truncate ON audit_record")
        op.execute("DROP TRIGGER IF EXISTS audit_record_append_only ON audit_record")
        op.execute("DROP FUNCTION IF EXISTS audit_record_append_only()")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    # Plain ADD COLUMNs (no table copy on SQLite, however long the trail already is).
    for name, length in _COLUMNS:
        op.add_column('audit_record', sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=True))
    op.add_column('audit_record', sa.Column('protected', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column('audit_record', sa.Column('principal_kind', sqlmodel.sql.sqltypes.AutoString(length=16),
                                            nullable=False, server_default='person'))
    if not sqlite:
        # Comma-joined roles and route templates are longer than the old columns. SQLite does not enforce
        # VARCHAR lengths, so there the table is not copied for this.
        op.alter_column('audit_record', 'role', existing_type=sqlmodel.sql.sqltypes.AutoString(length=32),
                        type_=sqlmodel.sql.sqltypes.AutoString(length=128), existing_nullable=False)
        op.alter_column('audit_record', 'action', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64),
                        type_=sqlmodel.sql.sqltypes.AutoString(length=128), existing_nullable=False)
    # (case_id, at) answers everything the case_id index did, and the review query's period too.
    op.drop_index('ix_audit_record_case_id', table_name='audit_record')
    op.create_index('ix_audit_record_case_at', 'audit_record', ['case_id', 'at'], unique=False)
    op.create_index('ix_audit_record_user_at', 'audit_record', ['user', 'at'], unique=False)
    _create_triggers()


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    _drop_triggers()
    op.drop_index('ix_audit_record_user_at', table_name='audit_record')
    op.drop_index('ix_audit_record_case_at', table_name='audit_record')
    op.create_index('ix_audit_record_case_id', 'audit_record', ['case_id'], unique=False)
    if not sqlite:
        op.alter_column('audit_record', 'action', existing_type=sqlmodel.sql.sqltypes.AutoString(length=128),
                        type_=sqlmodel.sql.sqltypes.AutoString(length=64), existing_nullable=False)
        op.alter_column('audit_record', 'role', existing_type=sqlmodel.sql.sqltypes.AutoString(length=128),
                        type_=sqlmodel.sql.sqltypes.AutoString(length=32), existing_nullable=False)
    with op.batch_alter_table('audit_record', schema=None) as batch_op:
        for name in ('principal_kind', 'protected', *(name for name, _ in reversed(_COLUMNS))):
            batch_op.drop_column(name)
