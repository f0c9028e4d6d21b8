"""Check, copy and compare table rows between a source and a PostgreSQL target.

The copy streams rows in primary key order in batches, so memory stays flat
whatever the table size. Digests hash every row's values in a form that
compares equal on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
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
    """Return one line per value in ``table`` that PostgreSQL would reject.

    Also listed are values that SQLAlchemy cannot read back for the copy:
    enum values outside the list and numbers too wide for their decimal.
    NOTE: datetime, time, uuid and bytes columns are not checked. A malformed
    value there stops the copy itself, which rolls the target back.
    """
    keys = list(table.primary_key.columns)
    problems = []
    for column in table.columns:
        for condition, problem in column_checks(column):
            statement = sa.select(*keys).where(condition).limit(MAX_REPORTED_PROBLEMS)
            for row in connection.execute(statement):
                problems.append(describe_problem(table, keys, row, column, problem))
        if isinstance(column.type, sa.JSON):
            problems += json_problems(connection, table, column)
    return problems


# Integer types whose PostgreSQL column is narrower than SQLite's 64-bit integer.
NARROW_INTEGER_RANGES = (
    (sa.SmallInteger, "smallint", -(2**15), 2**15 - 1),
    (sa.Integer, "integer", -(2**31), 2**31 - 1),
)
NUL_BYTE = b"\x00"


def column_checks(column: sa.Column) -> list[tuple[sa.ColumnElement, str]]:
    """Return SQL conditions, each with its problem, that find bad values in ``column``."""
    column_type = column.type
    if isinstance(column_type, sa.TypeDecorator):
        column_type = column_type.impl_instance
    checks = []

    if isinstance(column_type, sa.String):
        # SQLite's text functions stop at a NUL character, so search the bytes.
        checks.append(
            (
                sa.func.instr(
                    sa.cast(column, sa.LargeBinary),
                    sa.literal(NUL_BYTE, sa.LargeBinary),
                )
                > 0,
                "contains the NUL character U+0000, which PostgreSQL text cannot store",
            )
        )

    length = getattr(column_type, "length", None)
    if isinstance(column_type, sa.String) and length:
        checks.append(
            (sa.func.length(column) > length, f"longer than {length} characters")
        )

    if isinstance(column_type, sa.Enum) and column_type.enums:
        checks.append(
            (
                sa.cast(column, sa.Text).not_in(column_type.enums),
                f"not one of {', '.join(column_type.enums)}",
            )
        )

    if isinstance(column_type, sa.Integer):
        checks.append(
            (sa.func.typeof(column).notin_(["integer", "null"]), "not an integer")
        )
        checks += integer_range_checks(column, column_type)

    if isinstance(column_type, (sa.Float, sa.Numeric)):
        checks.append(
            (
                sa.func.typeof(column).notin_(["integer", "real", "null"]),
                "not a number",
            )
        )
    if (
        isinstance(column_type, sa.Numeric)
        and not isinstance(column_type, sa.Float)
        and column_type.precision is not None
    ):
        checks += decimal_range_checks(column, column_type)

    if isinstance(column_type, sa.Date) and not isinstance(column_type, sa.DateTime):
        checks.append(
            (
                sa.func.date(column).is_(None) & column.is_not(None),
                "not a valid date",
            )
        )

    return checks


def integer_range_checks(
    column: sa.Column, column_type: sa.Integer
) -> list[tuple[sa.ColumnElement, str]]:
    if isinstance(column_type, sa.BigInteger):
        return []
    for integer_type, name, low, high in NARROW_INTEGER_RANGES:
        if isinstance(column_type, integer_type):
            out_of_range = (sa.func.typeof(column) == "integer") & (
                (column < low) | (column > high)
            )
            return [(out_of_range, f"outside the {name} range {low} to {high}")]
    return []


def decimal_range_checks(
    column: sa.Column, column_type: sa.Numeric
) -> list[tuple[sa.ColumnElement, str]]:
    """Find numbers that round to a value with more integer digits than numeric(p,s) has."""
    precision = column_type.precision
    scale = column_type.scale or 0
    # The smallest absolute value that rounds up to 10 ** (precision - scale).
    limit = 10 ** (precision - scale) - 10 ** (-scale) / 2
    too_large = sa.func.typeof(column).in_(["integer", "real"]) & (
        sa.func.abs(sa.type_coerce(column, sa.Float)) >= limit
    )
    return [(too_large, f"too large for decimal({precision},{scale})")]


def json_problems(
    connection: sa.Connection, table: sa.Table, column: sa.Column
) -> list[str]:
    """Return one line per value of a JSON column that PostgreSQL's json type rejects.

    Python's json module writes a float NaN or infinity as NaN or Infinity, so
    the API stores them on SQLite when a request contains a number such as 1e400.
    PostgreSQL rejects both, so this parser rejects them too.
    """
    keys = list(table.primary_key.columns)
    raw = sa.type_coerce(column, sa.Text)
    statement = sa.select(*keys, raw).where(raw.is_not(None)).order_by(*keys)
    problems = []
    result = connection.execute(statement, execution_options={"yield_per": BATCH_SIZE})
    for row in result:
        problem = json_text_problem(row[-1])
        if problem is None:
            continue
        problems.append(describe_problem(table, keys, row[:-1], column, problem))
        if len(problems) == MAX_REPORTED_PROBLEMS:
            break
    result.close()
    return problems


def json_text_problem(stored: object) -> str | None:
    """Return why PostgreSQL's json type rejects a stored value, or None if it accepts it."""
    # SQLite gives a column declared JSON numeric affinity, so it stores a
    # top-level JSON number as an integer or a real.
    if isinstance(stored, int):
        return None
    if isinstance(stored, float):
        if math.isfinite(stored):
            return None
        return f"not valid JSON: {stored} is not a JSON number"
    if isinstance(stored, bytes):
        try:
            stored = stored.decode("utf-8")
        except UnicodeDecodeError:
            return "not valid JSON: the stored bytes are not UTF-8"
    if not isinstance(stored, str):
        return f"not valid JSON: the stored value {stored!r} is not text"
    try:
        json.loads(stored, parse_constant=reject_json_constant)
    except ValueError as error:
        return f"not valid JSON: {error}"
    return None


def reject_json_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def describe_problem(
    table: sa.Table,
    keys: list[sa.Column],
    key_values: Sequence[object],
    column: sa.Column,
    problem: str,
) -> str:
    key = ", ".join(f"{k.name}={v!r}" for k, v in zip(keys, key_values, strict=True))
    return f"table {table.name}, {key}, column {column.name}: {problem}"


def utc_text(value: datetime.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).isoformat()


def json_text(value: object) -> str:
    return json.dumps(value, sort_keys=True)


# The normal form of each value type for the digest. Values of other types
# (str, int, bool, None) are their own normal form.
NORMAL_FORMS = {
    datetime.datetime: utc_text,
    datetime.date: str,
    datetime.time: str,
    uuid.UUID: str,
    Decimal: lambda value: format(value.normalize(), "f"),
    float: repr,
    bytes: bytes.hex,
    memoryview: lambda value: bytes(value).hex(),
    dict: json_text,
    list: json_text,
}


def normalized(value: object) -> object:
    """Return a value in a form that compares equal across SQLite and PostgreSQL."""
    form = NORMAL_FORMS.get(type(value))
    return value if form is None else form(value)


def table_rows(connection: sa.Connection, table: sa.Table) -> Iterator[tuple]:
    """Stream a table's rows in primary key order, converted by the column types."""
    statement = sa.select(table).order_by(*table.primary_key.columns)
    if connection.dialect.name != "sqlite":
        result = connection.execute(
            statement, execution_options={"yield_per": BATCH_SIZE}
        )
        for partition in result.partitions():
            yield from partition
        return
    # The result processors that SQLAlchemy would apply, a column at a time,
    # which saves building a Row object per row.
    processors = _sqlite_processors(connection.dialect, table)
    for batch in _sqlite_batches(connection, statement):
        columns = [
            values if processor is None else list(map(processor, values))
            for processor, values in zip(
                processors, zip(*batch, strict=True), strict=True
            )
        ]
        yield from zip(*columns, strict=True)


def table_digest(connection: sa.Connection, table: sa.Table) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    forms = NORMAL_FORMS
    for row in table_rows(connection, table):
        # Looked up by exact type, inline: a call per value would double the time.
        values = [
            value if (form := forms.get(type(value))) is None else form(value)
            for value in row
        ]
        digest.update(repr(values).encode())
        count += 1
    return count, digest.hexdigest()


def copy_table(
    source: sa.Connection,
    target_cursor,
    table: sa.Table,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Copy one table's rows with COPY; return how many were copied.

    ``on_batch`` receives the number of rows of each batch once it is written.

    The rows are turned into COPY's text format a batch and a column at a
    time. Each value is converted by its column type's result processor, as
    ``table_rows`` converts it, so the target receives the values that the
    digest compares. From SQLite the rows are read as the driver returns them
    and converted here. The table's foreign keys are dropped for the copy and
    added again after it, so PostgreSQL checks each of them with one join
    instead of once per row. Call it inside the target's transaction, so that
    a failed copy rolls the drop back.
    """
    from psycopg import sql

    names = sql.SQL(", ").join(sql.Identifier(column.name) for column in table.columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), names
    )
    select = sa.select(table).order_by(*table.primary_key.columns)
    from_sqlite = source.dialect.name == "sqlite"
    if from_sqlite:
        batches = _sqlite_batches(source, select)
        processors = _sqlite_processors(source.dialect, table)
    else:
        result = source.execute(select, execution_options={"yield_per": BATCH_SIZE})
        batches = result.partitions()
        processors = [None] * len(table.columns)
    converters = [
        _copy_converter(column, processor, target_cursor, from_sqlite=from_sqlite)
        for column, processor in zip(table.columns, processors, strict=True)
    ]
    foreign_keys = _drop_foreign_keys(target_cursor, table)
    count = 0
    with target_cursor.copy(statement) as copy:
        for batch in batches:
            columns = [
                convert(values)
                for convert, values in zip(
                    converters, zip(*batch, strict=True), strict=True
                )
            ]
            lines = map("\t".join, zip(*columns, strict=True))
            copy.write("\n".join(lines) + "\n")
            count += len(batch)
            if on_batch is not None:
                on_batch(len(batch))
    _add_foreign_keys(target_cursor, table, foreign_keys)
    return count


def _sqlite_processors(dialect: sa.Dialect, table: sa.Table) -> list:
    """Return each column's result processor, or None where a value needs none.

    SQLite's processors do not depend on the cursor's column types, which
    PostgreSQL's do, so they can be looked up before the query runs.
    """
    return [
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in table.columns
    ]


def _sqlite_batches(source: sa.Connection, select: sa.Select) -> Iterator[list]:
    """Stream the rows of ``select`` in batches, as sqlite3 returns them.

    sqlite3 steps through the result as rows are fetched, and its own cursor
    skips the Row objects that SQLAlchemy would build.
    """
    cursor = source.connection.driver_connection.cursor()
    try:
        cursor.execute(str(select.compile(dialect=source.dialect)))
        while batch := cursor.fetchmany(BATCH_SIZE):
            yield batch
    finally:
        cursor.close()


# COPY's text format writes NULL as \N and needs a backslash before each
# backslash, tab, newline and carriage return inside a value.
COPY_NULL = "\\N"


def _copy_escape(text: str) -> str:
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    return text


def _copy_text(value: object) -> str | None:
    """Return a converted value in COPY's text format, or None for psycopg to format."""
    kind = type(value)
    if kind is str:
        return _copy_escape(value)
    if kind is bool:
        return "t" if value else "f"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else None
    if kind is Decimal:
        return str(value) if value.is_finite() else None
    if kind in (datetime.datetime, datetime.date, datetime.time):
        return value.isoformat()
    if kind is bytes:
        # bytea's hex input, with its backslash escaped for COPY.
        return "\\\\x" + value.hex()
    if kind is uuid.UUID:
        return str(value)
    return None


def _copy_converter(column: sa.Column, processor, target_cursor, *, from_sqlite: bool):
    """Return a function that turns one column of a batch into COPY text.

    ``processor`` is the column's result processor for values that arrive
    unconverted, or None. The common types are formatted inline in a list
    comprehension, because a function call per value would take most of the
    copy's time. Every other value goes through ``_copy_text``, and what that
    leaves, such as NaN or an unusual type, through psycopg's own text
    dumper, as ``write_row`` formats it.
    """
    from psycopg.adapt import PyFormat, Transformer
    from psycopg.types.json import Json

    is_json = isinstance(column.type, sa.JSON)
    transformer = Transformer(target_cursor)
    encoding = target_cursor.connection.info.encoding
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = object

    def dumped(value: object) -> str:
        if is_json:
            value = Json(value)
        data = transformer.get_dumper(value, PyFormat.TEXT).dump(value)
        if data is None:
            return COPY_NULL
        return _copy_escape(bytes(data).decode(encoding))

    def formatted(value: object) -> str:
        if value is None:
            return COPY_NULL
        text = None if is_json else _copy_text(value)
        return dumped(value) if text is None else text

    def processed(values: Sequence[object]) -> Sequence[object] | Iterator[object]:
        return values if processor is None else map(processor, values)

    if is_json and from_sqlite:
        # SQLite stores JSON as its text, which PostgreSQL's json type keeps
        # as it is. A top-level number is stored as a number, so it is
        # converted like any other value.
        def convert(values):
            return [
                COPY_NULL
                if raw is None
                else _copy_escape(raw)
                if type(raw) is str
                else formatted(raw if processor is None else processor(raw))
                for raw in values
            ]

    elif is_json:

        def convert(values):
            return [formatted(value) for value in processed(values)]

    elif python_type is int or python_type is str:

        def convert(values):
            return [
                COPY_NULL
                if value is None
                else str(value)
                if type(value) is int
                else _copy_escape(value)
                if type(value) is str
                else formatted(value)
                for value in processed(values)
            ]

    elif python_type is Decimal:

        def convert(values):
            return [
                COPY_NULL
                if value is None
                else str(value)
                if type(value) is Decimal and value.is_finite()
                else formatted(value)
                for value in processed(values)
            ]

    elif python_type is datetime.datetime or python_type is datetime.date:

        def convert(values):
            return [
                COPY_NULL
                if value is None
                else value.isoformat()
                if type(value) is python_type
                else formatted(value)
                for value in processed(values)
            ]

    else:

        def convert(values):
            return [formatted(value) for value in processed(values)]

    return convert


def _drop_foreign_keys(target_cursor, table: sa.Table) -> list[tuple[str, str]]:
    """Drop the foreign keys of ``table``; return each one's name and definition."""
    from psycopg import sql

    constraints = target_cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        (sql.Identifier(table.name).as_string(target_cursor),),
    ).fetchall()
    for name, _ in constraints:
        target_cursor.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table.name), sql.Identifier(name)
            )
        )
    return constraints


def _add_foreign_keys(
    target_cursor, table: sa.Table, constraints: list[tuple[str, str]]
) -> None:
    """Add the foreign keys that ``_drop_foreign_keys`` dropped, checking every row."""
    from psycopg import sql

    for name, definition in constraints:
        target_cursor.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(table.name), sql.Identifier(name), sql.SQL(definition)
            )
        )


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
