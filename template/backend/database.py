"""Database connection: the engine, the session factory and the ``get_db`` dependency.

``DATABASE_URL`` comes from the environment or from ``backend/.env``; an
exported variable wins over the file. The same code serves SQLite (tier 1) and
PostgreSQL (tiers 2 and 3); only the URL changes.
"""

import os
from collections.abc import Iterator
from pathlib import Path

from dotenv import load_dotenv
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

BACKEND_DIR = Path(__file__).resolve().parent
ENV_FILE = BACKEND_DIR / ".env"

# Seconds a SQLite connection waits for another connection's write lock.
SQLITE_BUSY_TIMEOUT = 30
# Connections per process on PostgreSQL, kept small because many projects share
# one server; requests release their connection before the response is sent.
# Two workers open at most 2 x (5 + 3) = 16 of a provisioned role's 20. The
# spare ones matter: PostgreSQL counts a closed overflow connection against the
# role until its backend has exited, so a pool sized to the limit sometimes
# fails with "too many connections for role" under load.
POSTGRES_POOL_SIZE = 5
POSTGRES_MAX_OVERFLOW = 3

load_dotenv(ENV_FILE)


class DatabaseConfigError(RuntimeError):
    """``DATABASE_URL`` is missing or is not a URL SQLAlchemy can use."""


def parse_database_url(raw_url: str | None) -> URL:
    """Parse ``DATABASE_URL`` and anchor a relative SQLite path at ``backend/``."""
    if not raw_url:
        raise DatabaseConfigError(
            f"DATABASE_URL is not set; add DATABASE_URL=sqlite:///./database.sqlite "
            f"to {ENV_FILE} or export it"
        )
    try:
        url = make_url(raw_url)
    except ArgumentError:
        raise DatabaseConfigError(
            f"DATABASE_URL in {ENV_FILE} or the environment is not a database URL; "
            "expected sqlite:///./database.sqlite or "
            "postgresql+psycopg://user:password@host/dbname"
        ) from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise DatabaseConfigError(
            f"DATABASE_URL uses the unsupported backend {url.get_backend_name()!r}; "
            "use sqlite:/// or postgresql+psycopg://"
        )
    if is_sqlite_file(url) and not Path(url.database).is_absolute():
        url = url.set(database=str(BACKEND_DIR / url.database))
    return url


def is_sqlite_file(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database not in (
        None,
        "",
        ":memory:",
    )


def build_engine(url: URL) -> Engine:
    """Create the engine with the settings each database needs under concurrent requests."""
    if url.get_backend_name() == "postgresql":
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=POSTGRES_POOL_SIZE,
            max_overflow=POSTGRES_MAX_OVERFLOW,
        )
    if is_sqlite_file(url):
        new_engine = create_engine(url, connect_args={"check_same_thread": False})
    else:
        # Every session must see the same in-memory database, so share one connection.
        new_engine = create_engine(
            url, connect_args={"check_same_thread": False}, poolclass=StaticPool
        )
    event.listen(new_engine, "connect", configure_sqlite_connection)
    event.listen(new_engine, "begin", begin_sqlite_transaction)
    return new_engine


def configure_sqlite_connection(dbapi_connection, connection_record) -> None:
    # Let SQLAlchemy emit BEGIN itself (see begin_sqlite_transaction) instead of
    # the sqlite3 module's implicit transactions, which do not isolate a read
    # followed by a write.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT * 1000}")
    cursor.close()
    # SQLite's built-in lower() folds only ASCII letters; PostgreSQL's folds all.
    dbapi_connection.create_function("lower", 1, unicode_lower, deterministic=True)


def unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def begin_sqlite_transaction(connection) -> None:
    # A deferred transaction that reads and then writes fails at once with
    # "database is locked" when another connection wrote in between; the busy
    # timeout does not apply. Write transactions therefore take the write lock
    # up front with BEGIN IMMEDIATE; read transactions stay deferred, so reads
    # run concurrently with a writer under WAL.
    mode = (
        "IMMEDIATE"
        if connection.get_execution_options().get("sqlite_write")
        else "DEFERRED"
    )
    connection.exec_driver_sql(f"BEGIN {mode}")


def begin_write(db: Session) -> None:
    """Start the session's transaction as a write transaction.

    Call it before the first read of a read-then-write unit of work. On SQLite it
    takes the write lock at once (waiting up to the busy timeout); on PostgreSQL
    it changes nothing. It has no effect inside an already started transaction.
    """
    db.connection(execution_options={"sqlite_write": True})


DATABASE_URL = os.environ.get("DATABASE_URL")
engine = build_engine(parse_database_url(DATABASE_URL))
SessionLocal = sessionmaker(
    autocommit=False, autoflush=False, expire_on_commit=False, bind=engine
)


def get_db() -> Iterator[Session]:
    """Yield a session for one request and close it afterwards."""
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()
