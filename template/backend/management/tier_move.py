"""Move a project and its data up a tier, all or nothing.

A project moves from SQLite to either PostgreSQL tier, or from a schema on the
shared server (tier 2) to a database of its own (tier 3). First the source is
checked: it must be at head, with no orphaned foreign key and no value
PostgreSQL would reject. Then the target is provisioned and Alembic builds its
schema. Writes to the source are blocked while the rows are copied table by
table, in foreign key order, inside one target transaction with COPY, and
every sequence is set past the copied keys. Row counts and digests are
compared, the old data is kept as a read-only file in ``backend/backups/``,
and only then does ``backend/.env`` point at the target. Any failure drops
what was provisioned and leaves the project on its old tier, untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from management.backups import new_backup_path
from management.data_copy import copy_table, preflight, reset_sequences, table_digest
from management.env_file import ENV_FILE
from management.errors import ManagementError, UsageError

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parent.parent
TIER_ORDER = ("sqlite", "postgres_schema", "postgres_database")
LOCK_NOT_AVAILABLE = "55P03"


@dataclass
class MoveResult:
    """Outcome of a tier move: per-table row counts and where the old data went."""

    source_tier: str
    target_tier: str
    rows: dict[str, int] = field(default_factory=dict)
    backup: str | None = None
    warnings: list[str] = field(default_factory=list)


class RowProgress:
    """Receives the number of rows to copy, then each batch copied; shows nothing.

    The command line passes a subclass that draws a progress bar.
    """

    def start(self, total: int) -> None:
        """Called once, before the first row, with the number of rows to copy."""

    def advance(self, rows: int) -> None:
        """Called after each batch of ``rows`` rows is written to the target."""


def migrate_target(url: str) -> None:
    """Build the target's schema with Alembic, on a connection to the target."""
    from alembic import command
    from alembic.util import CommandError

    from management.migrations import alembic_config

    target = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with target.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except (CommandError, sa.exc.SQLAlchemyError) as error:
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ManagementError(
            f"alembic upgrade head on the new database failed: {detail}"
        ) from None
    finally:
        target.dispose()


def move_up(target_tier: str, progress: RowProgress | None = None) -> MoveResult:
    """Move the project to ``target_tier``; see the module docstring for the steps."""
    import models
    from database import engine
    from management import project_config
    from management.migrations import current_revision, head_revision

    config = project_config.read_config()
    source_tier = current_tier(engine.url, config)
    check_direction(source_tier, target_tier)
    if current_revision() != head_revision():
        raise ManagementError(
            f"the database is at revision {current_revision()}, not at head "
            f"{head_revision()}; run python manage.py migrate first"
        )
    clear_interrupted_move(config)
    result = MoveResult(source_tier=source_tier, target_tier=target_tier)
    progress = progress or RowProgress()
    if source_tier == "sqlite":
        move_from_sqlite(engine, models.Base.metadata, config, result, progress)
    else:
        move_from_schema(engine, models.Base.metadata, config, result, progress)
    return result


def record_move(target: dict[str, object]) -> None:
    """Note in db_config.json what a move is about to create, before it exists.

    A move killed before its end leaves this note, and the next move removes
    what it names before it starts again.
    """
    from management import project_config

    project_config.write_config({"move_in_progress": target})


def clear_interrupted_move(config: dict[str, object]) -> None:
    """Remove what a move that never finished had created on the server."""
    from management.provisioning import admin_connection, deprovision, drop_database

    leftover = config.get("move_in_progress")
    if not leftover:
        return
    logger.warning("Removing what an interrupted move created: %s", leftover)
    if leftover["role_created"]:
        with admin_connection() as admin:
            role_exists = (
                admin.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (leftover["role"],)
                ).fetchone()
                is not None
            )
        if role_exists:
            deprovision(leftover)
    else:
        drop_database(str(leftover["database"]))
    forget_move()
    del config["move_in_progress"]


def forget_move() -> None:
    from management import project_config

    if "move_in_progress" in project_config.read_config():
        project_config.write_config({}, remove=("move_in_progress",))


def current_tier(url: sa.URL, config: dict[str, object]) -> str:
    if url.get_backend_name() == "sqlite":
        return "sqlite"
    tier = config.get("tier")
    if tier not in TIER_ORDER[1:]:
        raise ManagementError(
            f"db_config.json gives tier {tier!r} for a PostgreSQL database; set "
            '"tier" to postgres_schema or postgres_database in db_config.json'
        )
    return str(tier)


def check_direction(source_tier: str, target_tier: str) -> None:
    if target_tier not in TIER_ORDER[1:]:
        raise UsageError(
            f"cannot move to tier {target_tier!r}; use postgres_schema or postgres_database"
        )
    if source_tier == target_tier:
        raise UsageError(f"the project is already on {target_tier}; nothing to move")
    if TIER_ORDER.index(target_tier) < TIER_ORDER.index(source_tier):
        raise UsageError(
            f"the project is on {source_tier} and cannot move down to {target_tier}; "
            "a project only moves up: sqlite, postgres_schema, postgres_database"
        )


def move_from_sqlite(
    source: sa.Engine,
    metadata: sa.MetaData,
    config: dict[str, object],
    result: MoveResult,
    progress: RowProgress,
) -> None:
    from management.provisioning import deprovision, provision
    from management.sqlite_files import remove_sqlite_files, sqlite_path

    preflight(source, metadata)
    try:
        target = provision(
            result.target_tier, project_slug(config), before_creating=record_move
        )
    except BaseException:
        forget_move()
        raise
    database = sqlite_path()
    env_before = ENV_FILE.read_bytes()
    backup: Path | None = None
    try:
        migrate_target(target.url)
        # BEGIN IMMEDIATE holds SQLite's write lock for the whole copy, so no
        # request can write a row that the copy would miss.
        with (
            source.connect().execution_options(sqlite_write=True) as reader,
            reader.begin(),
        ):
            progress.start(count_rows(reader, metadata))
            with open_target(target.url) as writer, writer.cursor() as cursor:
                for table in metadata.sorted_tables:
                    result.rows[table.name] = copy_table(
                        reader, cursor, table, progress.advance
                    )
                finish_target(writer, cursor, metadata)
            verify_copy(reader, target.url, metadata, result.source_tier)
            backup = new_backup_path(
                database.stem, f"before-{result.target_tier}", ".sqlite"
            )
            keep_sqlite_backup(database, backup)
            # Still under the write lock: an app that has not restarted yet
            # gets an error instead of writing rows that the new tier never sees.
            block_sqlite_writes(reader, metadata, result.target_tier)
            result.backup = backup.relative_to(BACKEND_DIR.parent).as_posix()
            switch_to(target, config, result)
    except BaseException:
        ENV_FILE.write_bytes(env_before)
        deprovision(target.public_details())
        if backup is not None:
            remove_backup(backup)
        forget_move()
        raise
    remove_sqlite_files(database)


def block_sqlite_writes(
    connection: sa.Connection, metadata: sa.MetaData, target_tier: str
) -> None:
    """Add triggers that make every write to the old SQLite tables fail."""
    quote = connection.dialect.identifier_preparer.quote
    message = moved_message(target_tier).replace("'", "''")
    for table in metadata.sorted_tables:
        for event in ("INSERT", "UPDATE", "DELETE"):
            trigger = quote(f"moved_to_{target_tier}_{table.name}_{event.lower()}")
            connection.exec_driver_sql(
                f"CREATE TRIGGER {trigger} BEFORE {event} ON {quote(table.name)} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def block_postgres_writes(
    connection: sa.Connection, metadata: sa.MetaData, target_tier: str
) -> None:
    """Add a trigger to every old table that makes each write fail."""
    quote = connection.dialect.identifier_preparer.quote
    message = moved_message(target_tier).replace("'", "''")
    connection.exec_driver_sql(
        "CREATE FUNCTION refuse_writes_after_move() RETURNS trigger "
        "LANGUAGE plpgsql AS $body$ BEGIN RAISE EXCEPTION USING "
        f"ERRCODE = 'check_violation', MESSAGE = '{message}'; END $body$"
    )
    for table in metadata.sorted_tables:
        connection.exec_driver_sql(
            f"CREATE TRIGGER refuse_writes_after_move BEFORE INSERT OR UPDATE OR "
            f"DELETE ON {quote(table.name)} FOR EACH STATEMENT "
            "EXECUTE FUNCTION refuse_writes_after_move()"
        )


def moved_message(target_tier: str) -> str:
    return (
        f"this project moved to {target_tier}; restart the app so that it "
        "connects there"
    )


def remove_backup(backup: Path) -> None:
    if backup.exists():
        backup.chmod(0o644)
        backup.unlink()


def move_from_schema(
    source: sa.Engine,
    metadata: sa.MetaData,
    config: dict[str, object],
    result: MoveResult,
    progress: RowProgress,
) -> None:
    """Move a tier 2 project into a database of its own, keeping its role."""
    from management.postgres_clients import client_program, dump_schema
    from management.provisioning import (
        deprovision,
        drop_database,
        leave_shared_database,
        provision,
    )

    # Checked before anything is created: the move keeps the old schema as a dump.
    client_program("pg_dump")
    details = dict(config.get("provisioning") or {})
    old_database = source.url.database
    schema = str(details.get("schema") or source.url.username)
    try:
        target = provision(
            result.target_tier,
            project_slug(config),
            password=source.url.password,
            before_creating=record_move,
        )
    except BaseException:
        forget_move()
        raise
    env_before = ENV_FILE.read_bytes()
    backup: Path | None = None
    try:
        migrate_target(target.url)
        with source.connect() as reader, reader.begin():
            lock_for_copy(reader, metadata)
            progress.start(count_rows(reader, metadata))
            raw = reader.connection.driver_connection
            with (
                open_target(target.url) as writer,
                writer.cursor() as cursor,
                raw.cursor() as source_cursor,
            ):
                for table in metadata.sorted_tables:
                    result.rows[table.name] = copy_postgres_table(
                        source_cursor, cursor, table, progress
                    )
                finish_target(writer, cursor, metadata)
            verify_copy(reader, target.url, metadata, result.source_tier)
            # The dump runs while the copy's locks still block writes, so it
            # holds exactly the rows that were copied.
            backup = new_backup_path(schema, f"before-{result.target_tier}", ".sql")
            dump_schema(source.url, schema, backup, archive=False)
            backup.chmod(0o444)
            block_postgres_writes(reader, metadata, result.target_tier)
            result.backup = backup.relative_to(BACKEND_DIR.parent).as_posix()
            switch_to(target, config, result)
    except BaseException:
        ENV_FILE.write_bytes(env_before)
        if target.role_created:
            deprovision(target.public_details())
        else:
            drop_database(target.database)
        if backup is not None:
            remove_backup(backup)
        forget_move()
        raise
    source.dispose()
    try:
        leave_shared_database(target.role, old_database, schema)
    except Exception as error:  # noqa: BLE001 - the move itself is done
        logger.warning("Could not remove the old schema: %s", error)
        result.warnings.append(
            f"the old schema {schema} is still in database {old_database}: {error}; "
            "drop it by hand once you no longer need it"
        )


def project_slug(config: dict[str, object]) -> str:
    return str(config.get("project") or BACKEND_DIR.parent.name)


def count_rows(connection: sa.Connection, metadata: sa.MetaData) -> int:
    return sum(
        connection.scalar(sa.select(sa.func.count()).select_from(table))
        for table in metadata.sorted_tables
    )


def lock_for_copy(reader: sa.Connection, metadata: sa.MetaData) -> None:
    """Block writes to every table until the reader's transaction ends.

    SHARE mode lets requests go on reading while any write waits, and fails
    after the role's lock_timeout. The copy may take longer than the role's
    statement timeout, so the transaction lifts it.
    """
    reader.exec_driver_sql("SET LOCAL statement_timeout = 0")
    reader.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
    preparer = reader.dialect.identifier_preparer
    names = ", ".join(preparer.quote(table.name) for table in metadata.sorted_tables)
    if not names:
        return
    try:
        reader.exec_driver_sql(f"LOCK TABLE {names} IN SHARE MODE")
    except sa.exc.OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise ManagementError(
            "another transaction kept writing to the project's tables for longer "
            "than the role's lock_timeout, so the copy could not start; nothing was "
            "changed. Run the upgrade again when it has ended, or stop the app first"
        ) from None


def open_target(url: str):
    """Connect to the target as the project's role, with no statement timeout."""
    import psycopg

    connection = psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://", 1)
    )
    connection.execute("SET statement_timeout = 0")
    connection.execute("SET idle_in_transaction_session_timeout = 0")
    return connection


def copy_postgres_table(
    source_cursor, target_cursor, table: sa.Table, progress: RowProgress
) -> int:
    """Stream one table from PostgreSQL to PostgreSQL in COPY's text format."""
    from psycopg import sql

    columns = sql.SQL(", ").join(
        sql.Identifier(column.name) for column in table.columns
    )
    name = sql.Identifier(table.name)
    read = sql.SQL("COPY {} ({}) TO STDOUT").format(name, columns)
    write = sql.SQL("COPY {} ({}) FROM STDIN").format(name, columns)
    copied = 0
    with source_cursor.copy(read) as rows_out, target_cursor.copy(write) as rows_in:
        for block in rows_out:
            rows_in.write(block)
            # The text format ends every row with a newline and escapes any
            # newline inside a value.
            rows = bytes(block).count(b"\n")
            copied += rows
            progress.advance(rows)
    return copied


def finish_target(writer, cursor, metadata: sa.MetaData) -> None:
    """Set the sequences, commit the copy and refresh the planner's statistics."""
    reset_sequences(cursor, metadata)
    writer.commit()
    writer.autocommit = True
    writer.execute("ANALYZE")


def verify_copy(
    reader: sa.Connection, target_url: str, metadata: sa.MetaData, source_tier: str
) -> None:
    """Raise ManagementError unless every table has equal counts and digests."""
    target_engine = sa.create_engine(target_url, poolclass=sa.pool.NullPool)
    try:
        with target_engine.connect() as checker:
            checker.exec_driver_sql("SET statement_timeout = 0")
            checker.exec_driver_sql("SET idle_in_transaction_session_timeout = 0")
            for table in metadata.sorted_tables:
                before = table_digest(reader, table)
                after = table_digest(checker, table)
                if before != after:
                    raise ManagementError(
                        f"table {table.name} differs after the copy ({before[0]} rows "
                        f"before, {after[0]} after); the project stays on {source_tier}"
                    )
    finally:
        target_engine.dispose()


def switch_to(target, config: dict[str, object], result: MoveResult) -> None:
    """Point backend/.env at the target and record the move in db_config.json."""
    from management import project_config
    from management.env_file import write_env_file

    write_env_file(target.url, "postgresql")
    history = list(config.get("tier_history", []))
    history.append(
        {
            "from": result.source_tier,
            "to": result.target_tier,
            "at": project_config.utc_timestamp(),
            "rows": sum(result.rows.values()),
            "backup": result.backup,
        }
    )
    project_config.write_config(
        {
            "tier": result.target_tier,
            "database_type": "postgresql",
            "database": target.database,
            "schema": target.schema,
            "host": target.host,
            "port": target.port,
            "database_file": None,
            "provisioning": target.public_details(),
            "tier_history": history,
        },
        remove=("move_in_progress",),
    )


def keep_sqlite_backup(database: Path, backup: Path) -> None:
    """Copy the SQLite database to ``backup`` and make the copy read-only."""
    from management.sqlite_files import copy_sqlite

    copy_sqlite(database, backup)
    backup.chmod(0o444)
