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
from sqlalchemy.orm import DeclarativeBase, Session

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


def list_rows(
    db: Session, model: type[ModelT], *, offset: int, limit: int
) -> dict[str, Any]:
    """Return one page of rows in primary key order, with the total row count."""
    total = db.scalar(select(func.count()).select_from(model))
    statement = (
        select(model).order_by(*inspect(model).primary_key).offset(offset).limit(limit)
    )
    items = db.scalars(statement).all()
    db.commit()
    return {"items": items, "total": total, "offset": offset, "limit": limit}


def get_row(db: Session, model: type[ModelT], key: Sequence[Any]) -> ModelT:
    """Return the row with primary key ``key`` or raise ``RowNotFoundError``."""
    row = db.get(model, tuple(key))
    db.commit()
    if row is None:
        raise RowNotFoundError(describe_key(model, key))
    return row


def create_row(db: Session, model: type[ModelT], values: Mapping[str, Any]) -> ModelT:
    """Insert a row and return it."""
    begin_write(db)
    row = model(**values)
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
    begin_write(db)
    row = locked_row(db, model, key, if_match)
    for name, value in values.items():
        setattr(row, name, value)
    commit_or_conflict(db)
    return row


def delete_row(
    db: Session, model: type[ModelT], key: Sequence[Any], *, if_match: str | None = None
) -> None:
    """Delete the row with primary key ``key``."""
    begin_write(db)
    row = locked_row(db, model, key, if_match)
    db.delete(row)
    commit_or_conflict(db)


def locked_row(
    db: Session, model: type[ModelT], key: Sequence[Any], if_match: str | None
) -> ModelT:
    # with_for_update locks the row on PostgreSQL; on SQLite, begin_write has
    # already taken the database's write lock.
    row = db.get(model, tuple(key), with_for_update=True)
    if row is None:
        db.rollback()
        raise RowNotFoundError(describe_key(model, key))
    if if_match is not None and if_match not in {"*", etag(row)}:
        db.rollback()
        raise StaleRowError(f"{describe_key(model, key)} changed since ETag {if_match}")
    return row


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
