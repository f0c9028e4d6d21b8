"""Pydantic schemas for the API: what a request may send and a response returns.

Every limit here matches the column it feeds (length, integer range, decimal
digits, enum values), so SQLite rejects what PostgreSQL would reject.
"""

import base64
import datetime
import json
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)
from sqlalchemy import inspect
from sqlalchemy.orm import DeclarativeBase

RowT = TypeVar("RowT")


def as_utc(value: datetime.datetime) -> datetime.datetime:
    """Return ``value`` in UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def storable_text(value: str) -> str:
    """Reject the NUL character, which PostgreSQL text cannot hold.

    Pydantic already refuses lone surrogates in a string.
    """
    if "\x00" in value:
        raise ValueError(
            "must not contain the NUL character (U+0000), which PostgreSQL cannot store"
        )
    return value


def storable_json(value: Any) -> Any:
    """Reject JSON that PostgreSQL cannot store: NaN, infinities, lone surrogates."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
    except ValueError:
        raise ValueError(
            "must be finite JSON numbers and valid Unicode text: no NaN, "
            "Infinity or lone surrogate escapes"
        ) from None
    return value


def decode_base64(value: object) -> object:
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    return value


def primary_keys(rows: object) -> object:
    """Turn a list of related ORM rows into their primary keys."""
    if isinstance(rows, (list, tuple, set)):
        return [
            inspect(row).identity[0] if isinstance(row, DeclarativeBase) else row
            for row in rows
        ]
    return rows


Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, AfterValidator(storable_text)]
JSONValue = Annotated[Any, AfterValidator(storable_json)]
# Decimals travel as text in plain notation: "0.000001", never "1E-6".
PlainDecimal = Annotated[
    Decimal, PlainSerializer(lambda value: format(value, "f"), when_used="json")
]
UTCDatetime = Annotated[datetime.datetime, AfterValidator(as_utc)]
# Bytes travel as base64 text in JSON.
Base64Bytes = Annotated[
    bytes,
    BeforeValidator(decode_base64),
    PlainSerializer(lambda value: base64.b64encode(value).decode(), when_used="json"),
]
# The keys of the rows a many-to-many field points to, read from the relationship.
RelatedKeys = Annotated[list[Any], BeforeValidator(primary_keys)]


class Schema(BaseModel):
    """Base of every schema: reads ORM objects and rejects unknown fields."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")


class ListQuery(Schema):
    """Query parameters of a list endpoint; each model's Query class adds its filters.

    A text filter matches rows that contain the value, ignoring case; other
    filters match equal values. ``sort`` lists fields, ``-`` before a field
    for descending order: ``sort=-price,title``.
    """

    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)
    sort: str | None = Field(default=None, pattern=r"^-?\w+(,-?\w+)*$")


class Page(BaseModel, Generic[RowT]):
    """One page of a list endpoint."""

    items: list[RowT]
    total: int
    offset: int
    limit: int
