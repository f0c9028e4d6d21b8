"""Pydantic schemas for the API: what a request may send and a response returns.

Every limit here matches the column it feeds (length, integer range, decimal
digits, enum values), so SQLite rejects what PostgreSQL would reject.
"""

import base64
import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

RowT = TypeVar("RowT")


def as_utc(value: datetime.datetime) -> datetime.datetime:
    """Return ``value`` in UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def decode_base64(value: object) -> object:
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    return value


Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
UTCDatetime = Annotated[datetime.datetime, AfterValidator(as_utc)]
# Bytes travel as base64 text in JSON.
Base64Bytes = Annotated[
    bytes,
    BeforeValidator(decode_base64),
    PlainSerializer(lambda value: base64.b64encode(value).decode(), when_used="json"),
]


class Schema(BaseModel):
    """Base of every schema: reads ORM objects and rejects unknown fields."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")


class Page(BaseModel, Generic[RowT]):
    """One page of a list endpoint."""

    items: list[RowT]
    total: int
    offset: int
    limit: int
