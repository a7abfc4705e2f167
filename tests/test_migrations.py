"""Each service's migrations build exactly the tables its models declare: a model changed without a
migration (or a migration that drifts from its model) fails here, before it fails on a customer's database."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from tests.test_postgres import database_url  # noqa: F401 - the fixture: a fresh database, dropped after
from tillsammans_common.db import COMMON_VERSIONS, MIGRATIONS_ENV, make_engine, migrate

SERVICES = ["intake", "mapping", "consent", "meetings"]


def _tables_of(*modules: str) -> set[str]:
    """The tables whose models live in these packages."""
    return {mapper.local_table.name for mapper in SQLModel._sa_registry.mappers  # noqa: SLF001 - the registry
            if mapper.class_.__module__.split(".")[0] in modules and hasattr(mapper.local_table, "name")}


def _differences(service: str, url: str) -> list[object]:
    """What autogenerate would change to make the migrated database match the service's models."""
    package = importlib.import_module(f"tillsammans_{service}.models")
    importlib.import_module("tillsammans_common.models")
    importlib.import_module("tillsammans_common.cases")
    versions = Path(package.__file__).parent / "migrations" / "versions"  # type: ignore[arg-type]
    engine = make_engine(url)
    migrate(engine, versions)
    ours = _tables_of("tillsammans_common", f"tillsammans_{service}")

    def include(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
        table = getattr(obj, "table", obj) if kind != "table" else obj
        table_name = getattr(table, "name", name)
        return table_name in ours or (kind == "table" and name != "alembic_version" and reflected)

    # Column lengths only on PostgreSQL: SQLite enforces none, and the shared migrations widen them there only.
    compare_type = engine.dialect.name != "sqlite"
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"include_object": include,
                                                                   "compare_type": compare_type})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_match_the_models_on_sqlite(service: str, tmp_path: Path) -> None:
    differences = _differences(service, f"sqlite:///{tmp_path}/{service}.db")
    assert differences == [], f"{service}: models and migrations differ: {differences}"


@pytest.mark.postgres
@pytest.mark.parametrize("service", SERVICES)
def test_migrations_match_the_models_on_postgres(service: str, database_url: str) -> None:  # noqa: F811
    differences = _differences(service, database_url)
    assert differences == [], f"{service}: models and migrations differ: {differences}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_one_head(service: str) -> None:
    package = importlib.import_module(f"tillsammans_{service}")
    versions = Path(package.__file__).parent / "migrations" / "versions"  # type: ignore[arg-type]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_ENV))
    config.set_main_option("version_locations", f"{COMMON_VERSIONS} {versions}")
    config.set_main_option("path_separator", "space")
    heads = ScriptDirectory.from_config(config).get_heads()
    # One head for the shared tables and one for the service's own: a second means two branches of
    # work each added a revision after the same one, and one of them must be re-based on the other.
    assert len(heads) == 2, heads
