"""Alembic environment: connects with database.py's engine and compares with models.py."""

import logging
from logging.config import fileConfig

from alembic import context
from sqlalchemy.types import TypeDecorator

import models
from database import engine

config = context.config
if config.config_file_name is not None and config.attributes.get(
    "configure_logging", True
):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

logger = logging.getLogger(__name__)
target_metadata = models.Base.metadata


def render_item(type_, obj, autogen_context):
    """Render project column types as their plain SQLAlchemy type.

    Migrations then never import the application's modules, and a later change
    to column_types.py cannot break an old migration.
    """
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # Batch mode on every database, so a revision reads the same whichever
        # tier generated it; on PostgreSQL the batch runs plain ALTER statements.
        render_as_batch=True,
        compare_type=True,
        compare_server_default=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # A tier move passes the connection of the database it builds.
    given = config.attributes.get("connection")
    if given is not None:
        with given.begin():
            run_migrations(given)
        return
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            run_sqlite_migrations(connection)
        else:
            with connection.begin():
                run_migrations(connection)


def run_sqlite_migrations(connection) -> None:
    """Migrate with foreign keys off, then check that every reference still resolves.

    SQLite's batch mode copies and re-creates tables; with foreign keys on, that
    fails for referenced tables or cascades deletes into child rows. The pragma
    goes through the driver connection because it is a no-op inside a
    transaction, and SQLAlchemy's own execute would open one.
    """
    driver_connection = connection.connection.driver_connection
    driver_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        connection.execution_options(sqlite_write=True)
        with connection.begin():
            run_migrations(connection)
            violations = connection.exec_driver_sql(
                "PRAGMA foreign_key_check"
            ).fetchall()
            if violations:
                table, rowid, parent, _ = violations[0]
                raise RuntimeError(
                    f"the migration would leave {len(violations)} rows whose foreign key "
                    f"points nowhere (first: table {table}, rowid {rowid}, parent {parent}); "
                    "nothing was changed"
                )
    finally:
        driver_connection.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    raise SystemExit(
        "Offline (--sql) migrations are not supported; run them against a database."
    )
run_migrations_online()
