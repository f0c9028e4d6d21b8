"""Errors raised by the management commands.

Each error carries one line for a person or an agent to read: what is wrong,
with the bad value, and how to fix it. Only the command line catches them.
"""

from __future__ import annotations


class ManagementError(Exception):
    """A command failed. The message gives the reason and the next step."""

    exit_code = 1


class UsageError(ManagementError):
    """A command was called with invalid arguments."""

    exit_code = 2


class SpecError(ManagementError):
    """A model spec does not follow the field grammar."""

    def __init__(
        self,
        problem: str,
        *,
        fix: str,
        model: str | None = None,
        field: str | None = None,
    ):
        self.problem = problem
        self.fix = fix
        self.model = model
        self.field = field
        where = ""
        if model and field:
            where = f"model {model}, field {field}: "
        elif model:
            where = f"model {model}: "
        super().__init__(f"{where}{problem}; fix: {fix}")


def database_errors() -> tuple[type[Exception], ...]:
    """Return the exceptions a database command reports as one line.

    SQLAlchemy and Alembic may be missing when only code generation runs.
    """
    import sqlite3

    try:
        from alembic.util import CommandError
        from psycopg import Error as PsycopgError
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:
        return (OSError, sqlite3.Error)
    return (OSError, sqlite3.Error, SQLAlchemyError, CommandError, PsycopgError)


def describe_database_error(error: Exception) -> str:
    """Return the error's first line with the database it happened on, minus any password."""
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()
    first_line = detail[0] if detail else type(error).__name__
    try:
        from database import engine
    except Exception:  # noqa: BLE001 - the error above may come from importing database
        return first_line
    if engine.url.get_backend_name() == "sqlite" and any(
        sign in first_line for sign in DAMAGED_SQLITE_SIGNS
    ):
        return (
            f"the SQLite database {engine.url.database} is damaged or not a database "
            f"({first_line}); restore a backup with python manage.py restore FILE, "
            "choosing FILE from python manage.py backups"
        )
    where = engine.url.render_as_string(hide_password=True)
    if engine.url.get_backend_name() == "sqlite" and "unable to open" in first_line:
        return (
            f"cannot open the SQLite database {engine.url.database}: its folder does "
            "not exist or is not writable; fix DATABASE_URL in backend/.env or "
            "create the folder"
        )
    if any(sign in first_line for sign in UNREACHABLE_SERVER_SIGNS):
        return (
            f"{first_line} (database {where}); check that the PostgreSQL server is "
            "running and that DATABASE_URL in backend/.env is right"
        )
    return f"{first_line} (database {where})"


# libpq's messages when the server cannot be reached or refuses the login.
UNREACHABLE_SERVER_SIGNS = (
    "connection failed",
    "could not connect",
    "Connection refused",
)
# SQLite's messages for a file that is not a sound database.
DAMAGED_SQLITE_SIGNS = ("file is not a database", "database disk image is malformed")
