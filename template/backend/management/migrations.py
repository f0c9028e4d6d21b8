"""Alembic operations through its command API: revisions, upgrades and checks."""

from __future__ import annotations

import io
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from management.errors import ManagementError

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parent.parent
INITIAL_MESSAGE = "create initial tables"


@dataclass
class MigrationResult:
    """Outcome of a migrate run: revisions created and applied, and operations."""

    revision: str | None = None
    created_revision: str | None = None
    operations: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)


def alembic_config() -> Config:
    # Alembic's own progress lines would mix with the command's summary and
    # its --json output, so they go to a buffer.
    config = Config(str(BACKEND_DIR / "alembic.ini"), stdout=io.StringIO())
    # The command line configures logging; env.py must not replace it.
    config.attributes["configure_logging"] = False
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def current_revision() -> str | None:
    from database import engine

    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) or None


def head_revision() -> str | None:
    heads = script_directory().get_heads()
    return ",".join(sorted(heads)) or None


def pending_operations() -> list[str]:
    """Return the differences between the models and the database, one line each."""
    import models
    from database import engine

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, models.Base.metadata)
    return [describe_operation(difference) for difference in differences]


def describe_operation(difference) -> str:
    if isinstance(difference, list):
        return "; ".join(describe_operation(item) for item in difference)
    kind, *details = difference
    names = [
        getattr(item, "name", None) or str(item) for item in details if item is not None
    ]
    return f"{kind} {' '.join(str(name) for name in names[:3])}".strip()


def migrate(message: str | None = None) -> MigrationResult:
    """Bring the database to head, first adding a revision if the models changed.

    The first revision is created even when there are no models yet, so every
    database is at a known revision from the start.
    """
    result = MigrationResult()
    config = alembic_config()
    scripts = script_directory()
    if current_revision() != head_revision():
        before = current_revision()
        command.upgrade(config, "head")
        result.applied.append(f"{before or 'base'} -> {head_revision()}")
    operations = pending_operations()
    if operations or not scripts.get_heads():
        result.operations = operations
        revision_message = message or (
            INITIAL_MESSAGE if not scripts.get_heads() else "update models"
        )
        script = command.revision(config, message=revision_message, autogenerate=True)
        result.created_revision = script.revision
        try:
            command.upgrade(config, "head")
        except Exception:
            # The migration ran in one transaction that was rolled back; drop
            # its file too, so the project is as it was before.
            Path(script.path).unlink(missing_ok=True)
            raise
        result.applied.append(f"-> {result.created_revision}")
    result.revision = current_revision()
    leftover = pending_operations()
    if leftover:
        raise ManagementError(
            f"the database still differs from models.py after migrating ({leftover[0]}); "
            "check the newest file in migrations/versions"
        )
    return result


def check() -> list[str]:
    """Return what ``alembic check`` would report: pending model changes."""
    if current_revision() != head_revision():
        return [f"database at {current_revision()} is behind head {head_revision()}"]
    return pending_operations()


def backup_sqlite(database_path: Path, target: Path) -> None:
    """Copy a live SQLite database consistently with the backup API."""
    source = sqlite3.connect(database_path)
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination)
        finally:
            destination.close()
    finally:
        source.close()
