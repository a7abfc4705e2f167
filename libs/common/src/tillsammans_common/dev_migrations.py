"""Developer tool: autogenerate a migration for a package's models.

    python -m tillsammans_common.dev_migrations tillsammans_intake "add concern notes"

The package's ``models`` module is compared with a scratch database at the newest revision, and
the difference is written to ``<package>/migrations/versions``. Review it before committing.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from tillsammans_common.db import COMMON_VERSIONS, MIGRATIONS_ENV, make_engine, migrate


def main(package: str, message: str) -> None:
    """Write a new revision for ``package``'s branch."""
    module = importlib.import_module(package)
    importlib.import_module("tillsammans_common.models")
    importlib.import_module(f"{package}.models")
    versions = Path(module.__file__).parent / "migrations" / "versions"  # type: ignore[arg-type]
    versions.mkdir(parents=True, exist_ok=True)
    branch = package.removeprefix("tillsammans_")
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{scratch}/scratch.db")
        dirs = f"{COMMON_VERSIONS}" if versions == COMMON_VERSIONS else f"{COMMON_VERSIONS} {versions}"
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_ENV))
        config.set_main_option("version_locations", dirs)
        config.set_main_option("path_separator", "space")
        script = ScriptDirectory.from_config(config)
        has_branch = any(branch in (rev.branch_labels or ()) for rev in script.walk_revisions())
        if versions != COMMON_VERSIONS and any(versions.glob("*.py")):
            migrate(engine, versions)
        elif versions == COMMON_VERSIONS and has_branch:
            migrate(engine, COMMON_VERSIONS)
        elif versions != COMMON_VERSIONS:
            migrate(engine, versions)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["target_metadata"] = SQLModel.metadata
            kwargs: dict[str, object] = {"version_path": str(versions)}
            if has_branch:
                kwargs["head"] = f"{branch}@head"
            else:
                kwargs["head"] = "base"
                kwargs["branch_label"] = branch
                if versions != COMMON_VERSIONS:
                    kwargs["depends_on"] = script.get_revision("common@head").revision
            command.revision(config, message, autogenerate=True, **kwargs)  # type: ignore[arg-type]


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
