"""SQLAlchemy models: one class per table, all on one ``Base``.

Add or change models with ``python manage.py create-model`` or by hand, then
run ``python manage.py migrate``. Models never name a schema: on PostgreSQL the
project's role finds its tables through its ``search_path``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

# Alembic and every database see the same constraint names through this
# convention, so migrations can drop and rename constraints on SQLite too.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
