"""Sample values for every column type: API test payloads and seed rows.

Values are derived from the SQLAlchemy models, so they respect each column's
type, length, enum values and uniqueness, and rows a required foreign key
points to are inserted first.
"""

from __future__ import annotations

import base64
import datetime
import random
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Session

from column_types import ExactDecimal, UTCDateTime

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen")
WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor")
CITIES = ("Lisbon", "Nairobi", "Osaka", "Quito", "Tallinn", "Montreal", "Perth")


class SampleFactory:
    """Make rows of sample values; each call makes values unique within the run."""

    def __init__(self, seed: int = 0, *, reuse_parents: bool = False) -> None:
        self.random = random.Random(seed)
        self.next_number = 1
        # Seeding points new rows at existing parents; tests give each row its own.
        self.reuse_parents = reuse_parents

    def take_number(self) -> int:
        number = self.next_number
        self.next_number += 1
        return number

    def skip_past(self, number: int) -> None:
        """Number later rows above ``number``, such as the row count of a table."""
        self.next_number = max(self.next_number, number + 1)

    def column_value(self, column: sa.Column, number: int) -> Any:
        """Return a Python value of the column's type for row ``number``."""
        column_type = column.type
        name = column.name
        if isinstance(column_type, sa.Enum):
            return column_type.enums[number % len(column_type.enums)]
        if isinstance(column_type, ExactDecimal):
            precision, scale = column_type.impl.precision, column_type.impl.scale
            top = 10 ** min(precision - scale, 4)
            whole = self.random.randrange(top)
            fraction = self.random.randrange(10**scale) if scale else 0
            return Decimal(f"{whole}.{fraction:0{scale}d}" if scale else str(whole))
        if isinstance(column_type, UTCDateTime):
            start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
            return start + datetime.timedelta(
                minutes=number * 97 + self.random.randrange(60)
            )
        if isinstance(column_type, sa.Boolean):
            return number % 2 == 1
        if isinstance(column_type, sa.Date):
            return datetime.date(2024, 1, 1) + datetime.timedelta(days=number)
        if isinstance(column_type, sa.Time):
            return datetime.time(number % 24, (number * 7) % 60, 0)
        if isinstance(column_type, sa.Uuid):
            return uuid.UUID(int=self.random.getrandbits(128), version=4)
        if isinstance(column_type, sa.JSON):
            return {"label": self.random.choice(WORDS), "rank": number}
        if isinstance(column_type, sa.LargeBinary):
            return f"bytes-{number}".encode()
        if isinstance(column_type, (sa.Double, sa.Float)):
            return round(self.random.uniform(0, 1000), 3)
        if isinstance(column_type, sa.Integer):
            return number if column.unique else self.random.randrange(1, 1000)
        if isinstance(column_type, sa.String):
            return self.text_value(name, column_type.length, number)
        raise TypeError(f"no sample value for column {column} of type {column_type!r}")

    def text_value(self, name: str, length: int | None, number: int) -> str:
        if "email" in name:
            text = f"user{number}@example.com"
        elif "first_name" in name:
            text = self.random.choice(FIRST_NAMES)
        elif "last_name" in name:
            text = self.random.choice(LAST_NAMES)
        elif "name" in name:
            text = f"{self.random.choice(FIRST_NAMES)} {self.random.choice(LAST_NAMES)}"
        elif "city" in name:
            text = self.random.choice(CITIES)
        elif "phone" in name or "fax" in name:
            text = f"+1 555 {number:04d}"
        else:
            text = f"{self.random.choice(WORDS)} {self.random.choice(WORDS)}"
        # A number suffix keeps unique columns unique.
        text = f"{text} {number}" if "email" not in name else text
        if length is not None and len(text) > length:
            text = (
                str(number)[-length:] if len(str(number)) >= length else text[-length:]
            )
        return text

    def row_values(self, model: type[DeclarativeBase], db: Session) -> dict[str, Any]:
        """Return column values for a new row of ``model``.

        Foreign keys point to existing rows; when the referenced table is empty,
        a row is inserted there first.
        """
        number = self.take_number()
        values: dict[str, Any] = {}
        for column in model.__table__.columns:
            if is_generated_key(column):
                continue
            if column.foreign_keys:
                values[column.key] = self.parent_key(model, column, db)
            else:
                values[column.key] = self.column_value(column, number)
        return values

    def parent_key(
        self, model: type[DeclarativeBase], column: sa.Column, db: Session
    ) -> Any:
        foreign_key = next(iter(column.foreign_keys))
        target_column = foreign_key.column
        parent = model_for_table(model, target_column.table)
        if parent is model and column.nullable:
            return None
        # A key or unique column needs a parent of its own for each row.
        if self.reuse_parents and not (column.primary_key or column.unique):
            keys = db.scalars(sa.select(target_column).limit(100)).all()
            if keys:
                return self.random.choice(keys)
        parent_row = parent(**self.row_values(parent, db))
        db.add(parent_row)
        db.flush()
        return getattr(parent_row, target_column.key)


def is_generated_key(column: sa.Column) -> bool:
    """Return whether the database assigns this column, as for a lone integer key."""
    table = column.table
    return (
        column.primary_key
        and len(table.primary_key.columns) == 1
        and not column.foreign_keys
        and isinstance(column.type, sa.Integer)
    )


def model_for_table(
    model: type[DeclarativeBase], table: sa.Table
) -> type[DeclarativeBase]:
    for mapper in model.registry.mappers:
        if mapper.local_table is table:
            return mapper.class_
    raise LookupError(f"no model maps table {table.name}")


def to_json(value: Any) -> Any:
    """Return ``value`` the way the API writes it in JSON."""
    if isinstance(value, datetime.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def changed_value(column: sa.Column, value: Any, factory: SampleFactory) -> Any:
    """Return a value for ``column`` that differs from ``value``."""
    for number in range(1000, 1100):
        candidate = factory.column_value(column, number)
        if candidate != value:
            return candidate
    raise ValueError(f"no second value for column {column}")
