"""Parameters shared by the routers."""

from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy.orm import Session

from database import get_db

DbSession = Annotated[Session, Depends(get_db)]
# The ETag a client read; a PATCH or DELETE then applies only to that version.
IfMatch = Annotated[str | None, Header(alias="If-Match")]
