"""Alembic operations through its command API: revisions, upgrades and checks.

``migrate`` compares models.py with the database, refuses changes that lose
data unless they are allowed, backs a SQLite database up first, and puts the
database and the migration files back as they were when anything fails.
"""

from __future__ import annotations

import argparse
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import produce_migrations
from alembic.config import Config
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from management.errors import ManagementError
from management.sqlite_files import copy_sqlite, sqlite_path

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parent.parent
BACKUP_DIR = BACKEND_DIR / "backups"
INITIAL_MESSAGE = "create initial tables"
# Backups taken before migrations that are kept; older ones are deleted.
KEPT_MIGRATION_BACKUPS = 10


@dataclass
class MigrationResult:
    """Outcome of a migrate run: revisions created and applied, and operations."""

    revision: str | None = None
    created_revision: str | None = None
    operations: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    created_file: str | None = None
    backup: str | None = None


def alembic_config() -> Config:
    # Alembic's own progress lines would mix with the command's summary and
    # its --json output, so they go to a buffer.
    config = Config(
        str(BACKEND_DIR / "alembic.ini"),
        stdout=io.StringIO(),
        cmd_opts=argparse.Namespace(quiet=True),
    )
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


def pending_operations() -> list[ops.MigrateOperation]:
    """Return the operations that would bring the database in line with models.py."""
    import models
    from database import engine

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        script = produce_migrations(context, models.Base.metadata)
    return flatten(script.upgrade_ops.ops)


def flatten(operations: list[ops.MigrateOperation]) -> list[ops.MigrateOperation]:
    flat = []
    for operation in operations:
        if isinstance(operation, ops.ModifyTableOps):
            flat.extend(flatten(operation.ops))
        else:
            flat.append(operation)
    return flat


def describe(operation: ops.MigrateOperation) -> str:
    """Return one readable line for an operation, such as ``add column book.price``."""
    if isinstance(operation, ops.CreateTableOp):
        return f"add table {operation.table_name}"
    if isinstance(operation, ops.DropTableOp):
        return f"drop table {operation.table_name}"
    if isinstance(operation, ops.AddColumnOp):
        return f"add column {operation.table_name}.{operation.column.name}"
    if isinstance(operation, ops.DropColumnOp):
        return f"drop column {operation.table_name}.{operation.column_name}"
    if isinstance(operation, ops.AlterColumnOp):
        changes = []
        if operation.modify_type is not None:
            changes.append(f"type {operation.existing_type} -> {operation.modify_type}")
        if operation.modify_nullable is not None:
            changes.append(
                "required" if operation.modify_nullable is False else "optional"
            )
        if operation.modify_server_default is not False:
            changes.append("server default")
        detail = ", ".join(changes) or "options"
        return f"alter column {operation.table_name}.{operation.column_name} ({detail})"
    if isinstance(operation, ops.CreateIndexOp):
        return f"add index {operation.index_name}"
    if isinstance(operation, ops.DropIndexOp):
        return f"drop index {operation.index_name}"
    if isinstance(operation, ops.AddConstraintOp):
        return f"add constraint {operation.constraint_name}"
    if isinstance(operation, ops.DropConstraintOp):
        return f"drop constraint {operation.constraint_name}"
    return type(operation).__name__


def data_losses(operation: ops.MigrateOperation) -> str | None:
    """Return why an operation can lose data, or None when it cannot."""
    if isinstance(operation, ops.DropTableOp):
        return f"drops table {operation.table_name} and its rows"
    if isinstance(operation, ops.DropColumnOp):
        return f"drops column {operation.table_name}.{operation.column_name} and its values"
    if isinstance(operation, ops.AlterColumnOp) and operation.modify_type is not None:
        if narrows(operation.existing_type, operation.modify_type):
            return (
                f"changes {operation.table_name}.{operation.column_name} from "
                f"{operation.existing_type} to {operation.modify_type}, which can "
                "truncate or reject existing values"
            )
    return None


def narrows(old: sa.types.TypeEngine, new: sa.types.TypeEngine) -> bool:
    """Return whether values of type ``old`` may not fit type ``new``."""
    old_python, new_python = python_type(old), python_type(new)
    if old_python is not new_python:
        return not (old_python is int and new_python in {float, object})
    old_length = getattr(old, "length", None)
    new_length = getattr(new, "length", None)
    if new_length is not None and (old_length is None or new_length < old_length):
        return True
    old_precision = getattr(old, "precision", None)
    new_precision = getattr(new, "precision", None)
    return bool(old_precision and new_precision and new_precision < old_precision)


def python_type(column_type: sa.types.TypeEngine) -> type:
    try:
        return column_type.python_type
    except NotImplementedError:
        return object


def check_rows_fit(connection: sa.Connection, operation: ops.MigrateOperation) -> None:
    """Raise before migrating when a new NOT NULL column cannot be filled.

    Adding a required column without a server default, or making a column
    required while it contains NULLs, fails halfway on a table with rows.
    """
    if isinstance(operation, ops.AddColumnOp):
        column = operation.column
        if column.nullable or column.server_default is not None or column.primary_key:
            return
        table = sa.table(operation.table_name)
        rows = connection.execute(
            sa.select(sa.func.count()).select_from(table)
        ).scalar()
        if rows:
            raise ManagementError(
                f"the new required field {column.name} of table {operation.table_name} "
                f"has no default, and the table has {rows} rows; give the field a "
                "default (default=<value>) or make it optional, then migrate again"
            )
    if isinstance(operation, ops.AlterColumnOp) and operation.modify_nullable is False:
        table = sa.table(operation.table_name, sa.column(operation.column_name))
        nulls = connection.execute(
            sa.select(sa.func.count())
            .select_from(table)
            .where(table.c[operation.column_name].is_(None))
        ).scalar()
        if nulls:
            raise ManagementError(
                f"field {operation.column_name} of table {operation.table_name} becomes "
                f"required, but {nulls} rows have no value; fill them in first "
                "or give the field a default"
            )


def migrate(
    message: str | None = None, *, allow_destructive: bool = False
) -> MigrationResult:
    """Bring the database to head, adding a revision first if the models changed.

    The first revision is created even when there are no models yet, so every
    database is at a known revision from the start. Nothing is written when a
    change would lose data and ``allow_destructive`` is false, or when a new
    required column cannot be filled.
    """
    from database import engine

    result = MigrationResult()
    config = alembic_config()
    first_revision = not script_directory().get_heads()
    behind = current_revision() != head_revision()
    pending = [] if behind else pending_operations()
    if not behind and not pending and not first_revision:
        result.revision = current_revision()
        return result

    losses = [loss for loss in map(data_losses, pending) if loss]
    if losses and not allow_destructive:
        raise ManagementError(
            f"the migration {'; '.join(losses)}; nothing was changed. Back the data up "
            'and pass --allow-destructive (allow_destructive="true" in an action tag) '
            "if that is intended"
        )
    with engine.connect() as connection:
        for operation in pending:
            check_rows_fit(connection, operation)

    result.backup = backup_before_migrating() if current_revision() else None
    created_path = None
    try:
        if behind:
            before = current_revision()
            command.upgrade(config, "head")
            result.applied.append(f"{before or 'base'} -> {head_revision()}")
            pending = pending_operations()
        if pending or first_revision:
            result.operations = [describe(operation) for operation in pending]
            revision_message = message or (
                INITIAL_MESSAGE if first_revision else "update models"
            )
            script = command.revision(
                config, message=revision_message, autogenerate=True
            )
            created_path = Path(script.path)
            result.created_revision = script.revision
            result.created_file = created_path.relative_to(
                BACKEND_DIR.parent
            ).as_posix()
            command.upgrade(config, "head")
            result.applied.append(f"-> {script.revision}")
        leftover = pending_operations()
        if leftover:
            raise ManagementError(
                f"the database still differs from models.py after migrating "
                f"({describe(leftover[0])}); the migration was undone. Alembic cannot "
                "detect this change by itself: write the revision by hand with alembic revision"
            )
    except BaseException:
        # Put files and data back as they were, then let the error through.
        if created_path is not None:
            created_path.unlink(missing_ok=True)
        if result.backup is not None:
            restore_sqlite(Path(result.backup))
        raise
    result.revision = current_revision()
    return result


def check() -> list[str]:
    """Return what ``alembic check`` would report: pending model changes."""
    if current_revision() != head_revision():
        return [f"database at {current_revision()} is behind head {head_revision()}"]
    return [describe(operation) for operation in pending_operations()]


def backup_before_migrating() -> str | None:
    """Back the SQLite database up into backups/ and return the file, or None."""
    import datetime

    database = sqlite_path()
    if database is None or not database.exists():
        return None
    BACKUP_DIR.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = BACKUP_DIR / f"{database.stem}-{stamp}-before-migrate.sqlite"
    copy_sqlite(database, target)
    old_backups = sorted(BACKUP_DIR.glob(f"{database.stem}-*-before-migrate.sqlite"))
    for old in old_backups[:-KEPT_MIGRATION_BACKUPS]:
        old.unlink()
    return str(target)


def restore_sqlite(backup: Path) -> None:
    """Copy a backup over the live database with the backup API."""
    from database import engine

    database = sqlite_path()
    engine.dispose()
    copy_sqlite(backup, database)
