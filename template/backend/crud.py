"""Create, read, update and delete rows of any model.

Every function ends its transaction before it returns, so the session gives
its connection back to the pool before FastAPI serializes the response. A
request that held its connection through serialization would starve the pool
once more requests arrive than there are connections.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, selectinload
from sqlalchemy.sql.elements import ColumnElement

from database import begin_write

ModelT = TypeVar("ModelT", bound=DeclarativeBase)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class RowNotFoundError(LookupError):
    """No row has the requested primary key."""


class RowConflictError(ValueError):
    """The write breaks a unique or foreign key constraint."""


class StaleRowError(ValueError):
    """The row changed since the client read it (its ETag no longer matches)."""


class InvalidQueryError(ValueError):
    """A list request names a field the model cannot sort by."""


def list_rows(db: Session, model: type[ModelT], query: Any) -> dict[str, Any]:
    """Return one page of rows with the total count of rows that match the filters.

    ``query`` is the model's Query schema: ``offset``, ``limit``, ``sort`` and
    one optional filter per column. Rows come in the ``sort`` order, then in
    primary key order.
    """
    filters = query.model_dump(exclude_none=True, exclude={"offset", "limit", "sort"})
    conditions = [
        filter_condition(model, name, value) for name, value in filters.items()
    ]
    total = db.scalar(select(func.count()).select_from(model).where(*conditions))
    statement = (
        select(model)
        .where(*conditions)
        .order_by(*sort_order(model, query.sort), *inspect(model).primary_key)
        .options(*eager_loads(model))
        .offset(query.offset)
        .limit(query.limit)
    )
    items = db.scalars(statement).all()
    db.commit()
    return {
        "items": items,
        "total": total,
        "offset": query.offset,
        "limit": query.limit,
    }


def filter_condition(
    model: type[DeclarativeBase], name: str, value: Any
) -> ColumnElement:
    column = inspect(model).columns[name]
    if (
        isinstance(value, str)
        and column.type.python_type is str
        and not is_enum(column)
    ):
        # lower() on both sides: database.py gives SQLite a Unicode-aware lower(),
        # so matching ignores case the same way on SQLite and PostgreSQL.
        return func.lower(column).contains(value.lower(), autoescape=True)
    return column == value


def is_enum(column: Any) -> bool:
    return bool(getattr(column.type, "enums", None))


def sort_order(model: type[DeclarativeBase], sort: str | None) -> list[Any]:
    """Turn ``title,-price`` into ORDER BY clauses, rejecting unknown fields."""
    if not sort:
        return []
    columns = inspect(model).columns
    order = []
    for name in sort.split(","):
        descending = name.startswith("-")
        column = columns.get(name.removeprefix("-"))
        if column is None:
            valid = ", ".join(columns.keys())
            raise InvalidQueryError(
                f"cannot sort by {name.removeprefix('-')!r}; sort by one of {valid}, "
                "with - before a field for descending order"
            )
        order.append(column.desc() if descending else column.asc())
    return order


def eager_loads(model: type[DeclarativeBase]) -> list[Any]:
    """Load many-to-many collections with the rows, before the transaction ends."""
    return [
        selectinload(relationship)
        for relationship in inspect(model).relationships
        if relationship.secondary is not None
    ]


def get_row(db: Session, model: type[ModelT], key: Sequence[Any]) -> ModelT:
    """Return the row with primary key ``key`` or raise ``RowNotFoundError``."""
    row = db.get(model, tuple(key), options=eager_loads(model))
    db.commit()
    if row is None:
        raise RowNotFoundError(describe_key(model, key))
    return row


def create_row(db: Session, model: type[ModelT], values: Mapping[str, Any]) -> ModelT:
    """Insert a row and return it."""
    begin_write(db)
    columns, collections = split_related_keys(db, model, values)
    check_references(db, model, columns)
    row = model(**columns)
    for name, related in collections.items():
        setattr(row, name, related)
    db.add(row)
    commit_or_conflict(db)
    return row


def update_row(
    db: Session,
    model: type[ModelT],
    key: Sequence[Any],
    values: Mapping[str, Any],
    *,
    if_match: str | None = None,
) -> ModelT:
    """Set ``values`` on the row with primary key ``key`` and return it.

    With ``if_match``, the update happens only if the row's current ETag is
    that value; otherwise ``StaleRowError`` is raised and nothing changes.
    """
    precheck_etag(db, model, key, if_match)
    begin_write(db)
    row = locked_row(db, model, key, if_match)
    columns, collections = split_related_keys(db, model, values)
    check_references(db, model, columns)
    for name, value in {**columns, **collections}.items():
        setattr(row, name, value)
    commit_or_conflict(db)
    return row


def delete_row(
    db: Session, model: type[ModelT], key: Sequence[Any], *, if_match: str | None = None
) -> None:
    """Delete the row with primary key ``key``."""
    precheck_etag(db, model, key, if_match)
    begin_write(db)
    row = locked_row(db, model, key, if_match)
    check_not_referenced(db, model, row, key)
    db.delete(row)
    commit_or_conflict(db)


def precheck_etag(
    db: Session, model: type[DeclarativeBase], key: Sequence[Any], if_match: str | None
) -> None:
    """Reject a stale ETag in a plain read, before waiting for the write lock.

    A request that would get 412 anyway then never queues for SQLite's write
    lock. locked_row checks the ETag again under the lock, which decides.
    """
    if if_match is None or if_match == "*":
        return
    row = db.get(model, tuple(key), options=eager_loads(model))
    current = etag(row) if row is not None else None
    db.rollback()
    if row is not None and if_match != current:
        raise StaleRowError(f"{describe_key(model, key)} changed since ETag {if_match}")


def locked_row(
    db: Session, model: type[ModelT], key: Sequence[Any], if_match: str | None
) -> ModelT:
    # with_for_update locks the row on PostgreSQL; on SQLite, begin_write has
    # already taken the database's write lock.
    row = db.get(model, tuple(key), with_for_update=True, options=eager_loads(model))
    if row is None:
        db.rollback()
        raise RowNotFoundError(describe_key(model, key))
    if if_match is not None and if_match not in {"*", etag(row)}:
        db.rollback()
        raise StaleRowError(f"{describe_key(model, key)} changed since ETag {if_match}")
    return row


def check_references(
    db: Session, model: type[DeclarativeBase], values: Mapping[str, Any]
) -> None:
    """Raise RowConflictError naming the field when a foreign key points to no row."""
    for column in model.__table__.columns:
        value = values.get(column.key)
        if value is None:
            continue
        for foreign_key in column.foreign_keys:
            target = foreign_key.column
            found = db.scalar(select(target).where(target == value).limit(1))
            if found is None:
                db.rollback()
                raise RowConflictError(
                    f"{column.key} {value!r} names no row of {target.table.name}; "
                    "use the key of an existing row"
                )


def check_not_referenced(
    db: Session, model: type[DeclarativeBase], row: DeclarativeBase, key: Sequence[Any]
) -> None:
    """Raise RowConflictError when other rows still point to ``row``.

    Association tables of many-to-many fields delete their rows with it.
    """
    for table in model.metadata.tables.values():
        for foreign_key in table.foreign_keys:
            if foreign_key.column.table is not model.__table__ or foreign_key.ondelete:
                continue
            value = getattr(row, foreign_key.column.key)
            count = db.scalar(
                select(func.count())
                .select_from(table)
                .where(foreign_key.parent == value)
            )
            if count:
                db.rollback()
                raise RowConflictError(
                    f"{describe_key(model, key)} is still referenced by {count} rows of "
                    f"{table.name}; delete those rows or point them elsewhere first"
                )


def split_related_keys(
    db: Session, model: type[DeclarativeBase], values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Separate column values from ``<name>_ids`` lists of many-to-many fields.

    Each list of keys becomes the list of rows it names; a key with no row
    raises RowConflictError.
    """
    columns = dict(values)
    collections = {}
    for relationship in inspect(model).relationships:
        ids_name = f"{singular(relationship.key)}_ids"
        if relationship.secondary is None or ids_name not in columns:
            continue
        keys = columns.pop(ids_name)
        if keys is None:
            continue
        target = relationship.mapper.class_
        key_column = inspect(target).primary_key[0]
        rows = db.scalars(select(target).where(key_column.in_(keys))).all()
        missing = sorted(
            set(keys) - {getattr(row, key_column.key) for row in rows}, key=str
        )
        if missing:
            db.rollback()
            raise RowConflictError(
                f"{ids_name} names {target.__name__} rows that do not exist: {missing}"
            )
        collections[relationship.key] = rows
    return columns, collections


def singular(word: str) -> str:
    """Return ``tag`` for ``tags``: a many-to-many field ``tags`` travels as ``tag_ids``.

    The generator (management/grammar.py) names the schema field with the same
    rules; keep the two in step.
    """
    from management.grammar import singular as grammar_singular

    return grammar_singular(word)


def commit_or_conflict(db: Session) -> None:
    try:
        db.commit()
    except IntegrityError as error:
        db.rollback()
        detail = str(error.orig).splitlines()[0]
        raise RowConflictError(detail) from None


def etag(row: DeclarativeBase) -> str:
    """Return a strong ETag computed from the row's column values."""
    mapper = inspect(type(row))
    values = {column.key: getattr(row, column.key) for column in mapper.column_attrs}
    encoded = json.dumps(values, sort_keys=True, default=str).encode()
    return '"' + hashlib.sha256(encoded).hexdigest()[:32] + '"'


def describe_key(model: type[DeclarativeBase], key: Sequence[Any]) -> str:
    names = [column.key for column in inspect(model).primary_key]
    pairs = ", ".join(
        f"{name}={value!r}" for name, value in zip(names, key, strict=True)
    )
    return f"{model.__name__} with {pairs}"
