"""Copy every Chinook row into a generated project's database through its models.

Run it with the project's Python and the project's ``backend/`` directory on
``PYTHONPATH``, so that ``database`` and ``models`` are the project's modules:

    cd backend && PYTHONPATH=. .venv/bin/python load_chinook.py CHINOOK_SQLITE MAPPING_JSON

MAPPING_JSON maps each Chinook table to the name of its model and to the
model field of every Chinook column, for example
``{"Album": {"model": "Album", "columns": {"AlbumId": "id", "Title": "title"}}}``.
Rows go in through SQLAlchemy inserts on the model classes, so the project's
column types convert the values: Chinook's DATETIME text becomes a datetime
taken to be UTC, and its NUMERIC values, stored as floats, become Decimals.
The script prints the number of rows inserted per Chinook table as JSON.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import sys
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

# isort: split
# The generated project's own modules, found through PYTHONPATH.
import models
from database import SessionLocal


def to_python(value: object, python_type: type) -> object:
    """Convert a raw Chinook value to the Python type of the target column."""
    if value is None:
        return None
    if python_type is datetime.datetime:
        return datetime.datetime.fromisoformat(str(value)).replace(
            tzinfo=datetime.timezone.utc
        )
    if python_type is Decimal:
        # str() of a float is its shortest round-trip text, so 0.99 stays 0.99.
        return Decimal(str(value))
    return value


def python_type_of(column_type: sa.types.TypeEngine) -> type:
    """Return the Python type of a column's values."""
    # A TypeDecorator such as the project's UTCDateTime reports ``object``, so
    # ask the type that it wraps.
    if isinstance(column_type, sa.types.TypeDecorator):
        column_type = column_type.impl_instance
    return column_type.python_type


def read_rows(
    chinook: sqlite3.Connection, table: str, columns: dict[str, str], model: type
) -> list[dict[str, object]]:
    """Read one Chinook table as a list of dicts keyed by the model's field names."""
    model_columns = sa.inspect(model).columns
    python_types = {
        field: python_type_of(model_columns[field].type) for field in columns.values()
    }
    selected = ", ".join(f'"{column}"' for column in columns)
    cursor = chinook.execute(f'SELECT {selected} FROM "{table}"')
    fields = list(columns.values())
    return [
        {
            field: to_python(value, python_types[field])
            for field, value in zip(fields, row, strict=True)
        }
        for row in cursor
    ]


def load(chinook_path: Path, mapping: dict[str, dict]) -> dict[str, int]:
    """Insert the rows of every mapped Chinook table, parents before children."""
    table_order = [table.name for table in models.Base.metadata.sorted_tables]

    def position(chinook_table: str) -> int:
        model = getattr(models, mapping[chinook_table]["model"])
        return table_order.index(model.__tablename__)

    inserted: dict[str, int] = {}
    uri = f"{chinook_path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as chinook, SessionLocal() as db:
        for chinook_table in sorted(mapping, key=position):
            model = getattr(models, mapping[chinook_table]["model"])
            columns = mapping[chinook_table]["columns"]
            rows = read_rows(chinook, chinook_table, columns, model)
            # Rows keep Chinook's key order, so a self-reference such as
            # Employee.ReportsTo always points at a row inserted before it.
            db.execute(sa.insert(model), rows)
            inserted[chinook_table] = len(rows)
        db.commit()
    return inserted


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python load_chinook.py CHINOOK_SQLITE MAPPING_JSON", file=sys.stderr
        )
        return 2
    chinook_path = Path(argv[0])
    if not chinook_path.is_file():
        print(
            f"Chinook database not found: {chinook_path}; pass the path of chinook.sqlite",
            file=sys.stderr,
        )
        return 2
    inserted = load(chinook_path, json.loads(argv[1]))
    print(json.dumps(inserted, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
