"""Database engines, sessions and migrations: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import Engine, event
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlmodel import Session, create_engine

T = TypeVar("T")
MIGRATIONS_ENV = Path(__file__).parent / "migrations"
COMMON_VERSIONS = MIGRATIONS_ENV / "versions"


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


SQLITE_SYNCHRONOUS = ("NORMAL", "FULL")


def make_engine(url: str, *, sqlite_synchronous: str = "NORMAL", **kwargs: Any) -> Engine:
    """Create an engine tuned for the backend: WAL, ``sqlite_synchronous`` and a busy timeout for SQLite files."""
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
    if url.startswith("sqlite"):
        # One connection per process: SQLite admits one writer at a time anyway, and threads queueing
        # for the pool hand over at once, whereas connections competing for the file lock back off in
        # SQLite's busy handler with sleeps of up to 100 ms. Each service owns its file, so its own
        # process is the only writer; the timeout covers tools reading the file from outside.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=60, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_conn.cursor()
            # WAL lets readers proceed while the relay writes. NORMAL is durable across process crashes;
            # FULL syncs the log at every commit, so a commit also survives an OS crash or a power cut
            # (docs/decisions/0015-durability.md).
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, **kwargs)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


async def run_db(engine: Engine, work: Callable[[], T]) -> T:
    """Run blocking database work from async code: inline for SQLite, in a worker thread otherwise.

    A SQLite service has one connection (see ``make_engine``), so a worker thread could only queue
    for it, and the hop there and back (with the GIL handed over twice) costs more than the
    sub-millisecond transaction itself. A database across the network runs in a worker thread, so
    the event loop keeps serving while it waits.
    """
    if engine.dialect.name == "sqlite":
        return work()
    return await anyio.to_thread.run_sync(work)


def migrate(engine: Engine, versions_dir: Path, *, version_table: str = "alembic_version") -> None:
    """Bring the schema to the newest revision: the shared tables plus the service's own."""
    from alembic import command  # imported here: a serving process never needs Alembic (see migrate_in_child)
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_ENV))
    config.set_main_option("version_locations", f"{COMMON_VERSIONS} {versions_dir}")
    config.set_main_option("path_separator", "space")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["version_table"] = version_table
        command.upgrade(config, "heads")


MIGRATE_URL_VARIABLE = "TILLSAMMANS_MIGRATE_DATABASE_URL"


def migrate_in_child(database_url: str, versions_dir: Path, *, service: str, org: str) -> None:
    """Run ``migrate`` in a short-lived child process and wait for it; raise if it fails.

    Alembic and Mako take some 11 MB that a serving process would otherwise keep for its whole
    life (Python does not give imported modules' memory back). The URL travels in the child's
    environment, not its arguments, so a password in it never shows in the process list.
    """
    env = {**os.environ, MIGRATE_URL_VARIABLE: database_url}
    done = subprocess.run([sys.executable, "-m", "tillsammans_common.db", str(versions_dir), service, org],
                          env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"database migration failed (exit status {done.returncode}); see the log above")


def _migrate_main() -> None:
    """Entry point of the child ``migrate_in_child`` starts: ``<versions_dir> <service> <org>``."""
    from tillsammans_common.telemetry import setup_logging

    setup_logging(service=sys.argv[2], org=sys.argv[3])
    engine = make_engine(os.environ[MIGRATE_URL_VARIABLE])
    try:
        migrate(engine, Path(sys.argv[1]))
    finally:
        engine.dispose()


if __name__ == "__main__":
    _migrate_main()
