"""Database health: is it reachable, and is it at the newest Alembic revision?"""

from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from database import engine

ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"


def head_revisions() -> set[str]:
    """Return the head revisions of the project's migration scripts."""
    return set(ScriptDirectory.from_config(Config(ALEMBIC_INI)).get_heads())


def database_status() -> dict[str, Any]:
    """Return whether the database responds and whether it is at head."""
    heads = head_revisions()
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as error:
        detail = str(error.orig if hasattr(error, "orig") else error).splitlines()[0]
        return {
            "database": "unreachable",
            "at_head": False,
            "revision": None,
            "head": ",".join(sorted(heads)) or None,
            "detail": detail,
        }
    at_head = current == heads
    return {
        "database": "reachable",
        "at_head": at_head,
        "revision": ",".join(sorted(current)) or None,
        "head": ",".join(sorted(heads)) or None,
        "detail": "at head" if at_head else "migrations pending",
    }
