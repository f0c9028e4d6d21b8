"""Column types that behave the same on SQLite and PostgreSQL.

Migrations render these as their plain SQLAlchemy equivalents (see
``migrations/env.py``), so a migration never imports this module.
"""

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import DateTime, Numeric
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware.

    A naive value is taken to be UTC. SQLite has no time zone type, so without
    this type it would hand back naive datetimes while PostgreSQL returns aware ones.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return (
                value.replace(tzinfo=timezone.utc)
                if dialect.name != "sqlite"
                else value
            )
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class ExactDecimal(TypeDecorator):
    """A fixed-point number that comes back as a ``Decimal`` with its scale.

    PostgreSQL stores it as ``numeric(p, s)``. SQLite stores a float, which is
    exact up to 15 significant digits, the limit the field grammar enforces.
    """

    impl = Numeric
    cache_ok = True

    @property
    def python_type(self) -> type:
        return Decimal

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision=precision, scale=scale)
        self.quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            # asdecimal=False avoids SQLAlchemy's float-to-Decimal warning;
            # process_result_value does the exact conversion instead.
            return dialect.type_descriptor(
                Numeric(self.impl.precision, self.impl.scale, asdecimal=False)
            )
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value).quantize(self.quantum)
        return float(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(repr(value) if isinstance(value, float) else value).quantize(
            self.quantum
        )


def utc_now() -> datetime:
    """Return the current time in UTC, the default for ``default=now`` datetimes."""
    return datetime.now(timezone.utc)


def utc_today() -> date:
    """Return today's date in UTC, the default for ``default=now`` dates."""
    return utc_now().date()
