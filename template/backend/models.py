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

    def __str__(self) -> str:
        """Name the row for people, as the admin page's row pickers show it.

        The name is the first unique text field, else the first required one,
        else the first text field, then the model and key: "Ada (Author 1)".
        """
        mapper = sa.inspect(type(self))
        texts = [
            attribute
            for attribute in mapper.column_attrs
            if isinstance(attribute.columns[0].type, sa.String)
            and not attribute.columns[0].primary_key
        ]
        label_field = (
            next((text for text in texts if text.columns[0].unique), None)
            or next((text for text in texts if not text.columns[0].nullable), None)
            or next(iter(texts), None)
        )
        key = ", ".join(str(value) for value in mapper.primary_key_from_instance(self))
        name = f"{type(self).__name__} {key}"
        value = getattr(self, label_field.key) if label_field is not None else None
        return name if value is None else f"{value} ({name})"
