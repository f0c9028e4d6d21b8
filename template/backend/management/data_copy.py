"""Check, copy and compare table rows between a source and a PostgreSQL target.

The copy streams rows in primary key order in batches, so memory stays flat
whatever the table size. Digests hash every row's values in a form that
compares equal on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal

import sqlalchemy as sa

from management.errors import ManagementError

BATCH_SIZE = 2000
# Problems listed in one preflight error; the rest are counted.
MAX_REPORTED_PROBLEMS = 5


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
