"""Move a project's data from SQLite to a PostgreSQL tier, all or nothing.

First the source is checked: it must be at head, with no orphaned foreign key
and no value PostgreSQL would reject. Then the target is provisioned and
Alembic builds its schema. The rows are copied table by table, in foreign key
order, inside one target transaction with COPY, and every sequence is set past
the copied keys. Row counts and digests are compared, and only then does
``backend/.env`` point at the target. Any failure drops what was provisioned
and leaves the project on SQLite, untouched.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from management.errors import ManagementError, UsageError

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parent.parent
BATCH_SIZE = 2000
# Problems listed in one preflight error; the rest are counted.
MAX_REPORTED_PROBLEMS = 5


@dataclass
class MoveResult:
    """Outcome of a tier move: per-table row counts and where the old data went."""

    source_tier: str
    target_tier: str
    rows: dict[str, int] = field(default_factory=dict)
    backup: str | None = None


def preflight(source: sa.Engine, metadata: sa.MetaData) -> None:
    """Raise ManagementError listing rows PostgreSQL would reject or orphaned keys."""
    problems: list[str] = []
    with source.connect() as connection:
        for row in connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall():
            table, rowid, parent, _ = row
            problems.append(
                f"table {table}, rowid {rowid}: foreign key to {parent} points to no row"
            )
        for table in metadata.sorted_tables:
            problems += value_problems(connection, table)
    if problems:
        listed = "; ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = len(problems) - MAX_REPORTED_PROBLEMS
        suffix = f"; and {more} more" if more > 0 else ""
        raise ManagementError(
            f"the data cannot move to PostgreSQL: {listed}{suffix}; fix these rows and "
            "run the upgrade again (nothing was created or changed)"
        )


def value_problems(connection: sa.Connection, table: sa.Table) -> list[str]:
    """Return one line per value in ``table`` that PostgreSQL would reject."""
    keys = list(table.primary_key.columns)
    problems = []
    for column in table.columns:
        column_type = column.type
        checks = []
        length = getattr(column_type, "length", None)
        if isinstance(column_type, sa.String) and length:
            checks.append(
                (sa.func.length(column) > length, f"longer than {length} characters")
            )
        if isinstance(column_type, sa.Integer):
            checks.append(
                (sa.func.typeof(column).notin_(["integer", "null"]), "not an integer")
            )
        if isinstance(column_type, sa.Date) and not isinstance(
            column_type, sa.DateTime
        ):
            checks.append(
                (
                    sa.func.date(column).is_(None) & column.is_not(None),
                    "not a valid date",
                )
            )
        for condition, problem in checks:
            statement = sa.select(*keys).where(condition).limit(MAX_REPORTED_PROBLEMS)
            for row in connection.execute(statement):
                key = ", ".join(
                    f"{k.name}={v!r}" for k, v in zip(keys, row, strict=True)
                )
                problems.append(
                    f"table {table.name}, {key}, column {column.name}: {problem}"
                )
    return problems


def normalized(value: object) -> object:
    """Return a value in a form that compares equal across SQLite and PostgreSQL."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(value, (datetime.date, datetime.time, uuid.UUID)):
        return str(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def table_rows(connection: sa.Connection, table: sa.Table) -> Iterator[tuple]:
    """Stream a table's rows in primary key order, converted by the column types."""
    statement = sa.select(table).order_by(*table.primary_key.columns)
    result = connection.execution_options(yield_per=BATCH_SIZE).execute(statement)
    for partition in result.partitions():
        yield from partition


def table_digest(connection: sa.Connection, table: sa.Table) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    for row in table_rows(connection, table):
        digest.update(
            json.dumps([normalized(value) for value in row], default=str).encode()
        )
        count += 1
    return count, digest.hexdigest()


def copy_table(source: sa.Connection, target_cursor, table: sa.Table) -> int:
    """Copy one table's rows with COPY; return how many were copied."""
    from psycopg import sql
    from psycopg.types.json import Json

    columns = [column.name for column in table.columns]
    json_positions = {
        position
        for position, column in enumerate(table.columns)
        if isinstance(column.type, sa.JSON)
    }
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    count = 0
    with target_cursor.copy(statement) as copy:
        for row in table_rows(source, table):
            values = [
                Json(value)
                if position in json_positions and value is not None
                else value
                for position, value in enumerate(row)
            ]
            copy.write_row(values)
            count += 1
    return count


def reset_sequences(target_cursor, metadata: sa.MetaData) -> None:
    """Set each serial key's sequence past the largest copied key."""
    from psycopg import sql

    for table in metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        if (
            len(keys) != 1
            or not isinstance(keys[0].type, sa.Integer)
            or keys[0].foreign_keys
        ):
            continue
        sequence = target_cursor.execute(
            "SELECT pg_get_serial_sequence(%s, %s)", (table.name, keys[0].name)
        ).fetchone()[0]
        if sequence is None:
            continue
        target_cursor.execute(
            sql.SQL(
                "SELECT setval(%s, COALESCE((SELECT max({}) FROM {}), 0) + 1, false)"
            ).format(sql.Identifier(keys[0].name), sql.Identifier(table.name)),
            (sequence,),
        )


def migrate_target(url: str) -> None:
    """Build the target's schema with Alembic, in a process that reads the target URL."""
    environment = {**os.environ, "DATABASE_URL": url}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(BACKEND_DIR / "alembic.ini"),
            "upgrade",
            "head",
        ],
        cwd=BACKEND_DIR,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        detail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise ManagementError(
            f"alembic upgrade head on the new database failed: {detail}"
        )


def move_to_postgres(target_tier: str) -> MoveResult:
    """Move the SQLite project to ``target_tier``; see the module docstring for the steps."""
    import psycopg

    import models
    from database import engine as source
    from management import project_config
    from management.env_file import write_env_file
    from management.migrations import current_revision, head_revision
    from management.provisioning import deprovision, provision
    from management.sqlite_files import sqlite_path

    config = project_config.read_config()
    if source.url.get_backend_name() != "sqlite":
        raise UsageError(
            "only a SQLite project can move up for now; this project is on "
            f"{config.get('tier', 'postgresql')}"
        )
    if current_revision() != head_revision():
        raise ManagementError(
            f"the database is at revision {current_revision()}, not at head "
            f"{head_revision()}; run python manage.py migrate first"
        )
    metadata = models.Base.metadata
    preflight(source, metadata)

    slug = config.get("project") or BACKEND_DIR.parent.name
    target = provision(target_tier, slug)
    result = MoveResult(
        source_tier=config.get("tier", "sqlite"), target_tier=target_tier
    )
    try:
        migrate_target(target.url)
        target_url = target.url.replace("postgresql+psycopg://", "postgresql://", 1)
        target_engine = sa.create_engine(target.url, poolclass=sa.pool.NullPool)
        # BEGIN IMMEDIATE holds SQLite's write lock for the whole copy, so no
        # request can write a row that the copy would miss.
        with (
            source.connect().execution_options(sqlite_write=True) as reader,
            reader.begin(),
        ):
            with psycopg.connect(target_url) as writer, writer.cursor() as cursor:
                for table in metadata.sorted_tables:
                    result.rows[table.name] = copy_table(reader, cursor, table)
                reset_sequences(cursor, metadata)
                writer.commit()
                writer.autocommit = True
                writer.execute("ANALYZE")
            with target_engine.connect() as checker:
                for table in metadata.sorted_tables:
                    before = table_digest(reader, table)
                    after = table_digest(checker, table)
                    if before != after:
                        raise ManagementError(
                            f"table {table.name} differs after the copy ({before[0]} rows "
                            f"before, {after[0]} after); the project stays on SQLite"
                        )
        target_engine.dispose()
    except BaseException:
        deprovision(target.public_details())
        raise

    result.backup = retire_sqlite(sqlite_path(), target_tier)
    write_env_file(target.url, "postgresql")
    history = list(config.get("tier_history", []))
    history.append(
        {
            "from": result.source_tier,
            "to": target_tier,
            "at": project_config.utc_timestamp(),
            "rows": sum(result.rows.values()),
            "backup": result.backup,
        }
    )
    project_config.write_config(
        {
            "tier": target_tier,
            "database_type": "postgresql",
            "database": target.database,
            "schema": target.schema,
            "host": target.host,
            "port": target.port,
            "database_file": None,
            "provisioning": target.public_details(),
            "tier_history": history,
        }
    )
    return result


def retire_sqlite(database: Path, target_tier: str) -> str:
    """Copy the old SQLite database into backups/ read-only and remove the live file."""
    from management.migrations import BACKUP_DIR
    from management.sqlite_files import copy_sqlite, remove_sqlite_files

    BACKUP_DIR.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup = BACKUP_DIR / f"{database.stem}-{stamp}-before-{target_tier}.sqlite"
    copy_sqlite(database, backup)
    backup.chmod(0o444)
    remove_sqlite_files(database)
    return backup.relative_to(BACKEND_DIR.parent).as_posix()
