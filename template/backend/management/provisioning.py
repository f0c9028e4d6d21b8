"""Provision and remove a project's PostgreSQL role, schema and database.

Tier 2 gives each project a login role and a schema owned by it in one
shared database. The role's ``search_path`` names that schema, so the models
carry no schema. Tier 3 gives each project a database owned by its role,
with the same schema inside. The administrator's connection comes from the
``ADMIN_DATABASE_URL`` environment variable and is never stored, logged or
shown in a message.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from management.errors import ManagementError, UsageError

logger = logging.getLogger(__name__)

ADMIN_URL_VARIABLE = "ADMIN_DATABASE_URL"
SHARED_DATABASE_VARIABLE = "SHARED_DATABASE_NAME"
DEFAULT_SHARED_DATABASE = "aicoder_projects"
POSTGRES_TIERS = ("postgres_schema", "postgres_database")

# Limits set on every project role. The role can change its own timeouts, so
# they are defaults, not guarantees. Two uvicorn workers with database.py's
# pool (5 + 3 overflow each) open at most 16 connections. The other 4 cover
# backends that are still exiting, because PostgreSQL counts them against the
# limit, and manage.py commands run while the app is busy.
CONNECTION_LIMIT = 20
ROLE_SETTINGS = {
    "statement_timeout": "30s",
    "lock_timeout": "10s",
    "idle_in_transaction_session_timeout": "60s",
    # Datetimes near the ends of the range only read back in UTC.
    "timezone": "UTC",
}


@dataclass
class Provisioned:
    """Names of what was provisioned, and the project's own connection URL."""

    tier: str
    role: str
    schema: str
    database: str
    host: str | None
    port: int | None
    url: str = field(repr=False)
    role_created: bool = True

    def public_details(self) -> dict[str, object]:
        """Return the details db_config.json records: no password, no URL."""
        return {
            "tier": self.tier,
            "role": self.role,
            "schema": self.schema,
            "database": self.database,
            "host": self.host,
            "port": self.port,
        }


def identifier(slug: str) -> str:
    """Turn a project slug into the name of its role, schema or database."""
    name = slug.lower().replace("-", "_")
    if not name or len(name.encode()) > 63:
        raise UsageError(
            f"project name {slug!r} gives the PostgreSQL name {name!r}, which must "
            "have 1 to 63 bytes; use a shorter project slug"
        )
    if name.startswith("pg_"):
        raise UsageError(
            f"project name {slug!r} gives the PostgreSQL name {name!r}, and PostgreSQL "
            "reserves role names that start with pg_; use a project slug that does "
            "not start with pg- or pg_"
        )
    return name


def admin_connection_info() -> dict[str, object]:
    """Read ADMIN_DATABASE_URL into psycopg connection arguments."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    raw = os.environ.get(ADMIN_URL_VARIABLE)
    if not raw:
        raise UsageError(
            f"{ADMIN_URL_VARIABLE} is not set; export the URL of a PostgreSQL "
            "superuser or of a role with CREATEROLE and CREATEDB, such as "
            "postgresql://admin:PASSWORD@127.0.0.1:5432/postgres"
        )
    try:
        url = make_url(raw)
    except ArgumentError:
        raise UsageError(
            f"{ADMIN_URL_VARIABLE} is not a database URL; expected "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    # libpq also takes postgres:// for postgresql://.
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise UsageError(
            f"{ADMIN_URL_VARIABLE} must be a postgresql:// URL, "
            f"not {url.get_backend_name()}://"
        )
    info: dict[str, object] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database or "postgres",
    }
    return {key: value for key, value in info.items() if value is not None}


@contextmanager
def admin_connection(dbname: str | None = None) -> Iterator[object]:
    """Connect as the administrator in autocommit mode, to ``dbname`` if given."""
    import psycopg

    info = admin_connection_info()
    if dbname is not None:
        info["dbname"] = dbname
    try:
        connection = psycopg.connect(**info, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as error:
        # libpq's message names the host and user but never the password.
        detail = " ".join(
            line.strip() for line in str(error).splitlines() if line.strip()
        )
        raise ManagementError(
            f"cannot connect to the PostgreSQL server in {ADMIN_URL_VARIABLE}: "
            f"{detail}; check the variable and that the server is running"
        ) from None
    try:
        yield connection
    finally:
        connection.close()


def exists(connection, query: str, *params: object) -> bool:
    return connection.execute(query, params).fetchone() is not None


def provision(
    tier: str,
    slug: str,
    *,
    password: str | None = None,
    before_creating: Callable[[dict[str, object]], None] | None = None,
) -> Provisioned:
    """Create the project's role, and its schema (tier 2) or database (tier 3).

    Either everything is created or, when any step fails, what was created is
    dropped again. A name already taken on the server is an error before
    anything changes. A tier move passes the project's ``password``: its role
    is then kept if it exists, and created with that password if it does not.
    Once the names are known to be free, ``before_creating`` receives what is
    about to be created, so a caller can record it first.
    """
    from psycopg import sql

    if tier not in POSTGRES_TIERS:
        raise UsageError(
            f"tier {tier!r} has nothing to provision; use one of {', '.join(POSTGRES_TIERS)}"
        )
    name = identifier(slug)
    keep_role = password is not None
    password = password or secrets.token_urlsafe(32)
    undo: list[Callable[[], None]] = []
    info = admin_connection_info()
    with admin_connection() as admin:
        shared = os.environ.get(SHARED_DATABASE_VARIABLE, DEFAULT_SHARED_DATABASE)
        database = name if tier == "postgres_database" else shared
        role_exists = exists(admin, "SELECT 1 FROM pg_roles WHERE rolname = %s", name)
        check_names_free(
            admin, tier, name, database, role_taken=role_exists and not keep_role
        )
        if before_creating is not None:
            before_creating(
                {
                    "tier": tier,
                    "role": name,
                    "schema": name,
                    "database": database,
                    "role_created": not (keep_role and role_exists),
                }
            )
        try:
            if not (keep_role and role_exists):
                create_role(admin, name, password, undo)
            if tier == "postgres_database":
                admin.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(database), sql.Identifier(name)
                    )
                )
                undo.append(lambda: drop_database(database))
            elif not exists(
                admin, "SELECT 1 FROM pg_database WHERE datname = %s", database
            ):
                admin.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
                )
            lock_down_database(admin, database, name)
            lock_down_database(admin, info.get("dbname", "postgres"), None)
            with admin_connection(database) as inside:
                inside.execute(
                    sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                        sql.Identifier(name), sql.Identifier(name)
                    )
                )
                undo.append(lambda: drop_schema(database, name))
                # In a new database, public belongs to the database owner, which
                # in tier 3 is the project role. Handing it to the administrator
                # keeps the project's objects in its own schema on every tier.
                inside.execute("ALTER SCHEMA public OWNER TO CURRENT_USER")
                inside.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            admin.execute(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                    sql.Identifier(name), sql.Identifier(database), sql.Identifier(name)
                )
            )
        except Exception:
            for step in reversed(undo):
                try:
                    step()
                except Exception as error:  # noqa: BLE001 - keep undoing the rest
                    logger.error("Could not undo a provisioning step: %s", error)
            raise
    url = project_url(name, password, info, database)
    return Provisioned(
        tier,
        name,
        name,
        database,
        info.get("host"),
        info.get("port"),
        url,
        role_created=not (keep_role and role_exists),
    )


def check_names_free(
    admin, tier: str, name: str, database: str, *, role_taken: bool
) -> None:
    if role_taken:
        raise ManagementError(
            f"a PostgreSQL role named {name!r} already exists; nothing was changed. "
            "Choose another project slug, or remove the old project with manage.py deprovision"
        )
    if tier == "postgres_database" and exists(
        admin, "SELECT 1 FROM pg_database WHERE datname = %s", database
    ):
        raise ManagementError(
            f"a PostgreSQL database named {database!r} already exists; nothing was "
            "changed. Choose another project slug"
        )
    if tier == "postgres_schema" and exists(
        admin, "SELECT 1 FROM pg_database WHERE datname = %s", database
    ):
        with admin_connection(database) as inside:
            if exists(inside, "SELECT 1 FROM pg_namespace WHERE nspname = %s", name):
                raise ManagementError(
                    f"a schema named {name!r} already exists in database {database!r}; "
                    "nothing was changed. Choose another project slug"
                )


def create_role(
    admin, name: str, password: str, undo: list[Callable[[], None]]
) -> None:
    from psycopg import sql

    admin.execute(
        sql.SQL(
            "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE "
            "NOREPLICATION CONNECTION LIMIT {}"
        ).format(
            sql.Identifier(name), sql.Literal(password), sql.Literal(CONNECTION_LIMIT)
        )
    )
    undo.append(lambda: drop_role(name))
    for setting, value in ROLE_SETTINGS.items():
        admin.execute(
            sql.SQL("ALTER ROLE {} SET {} = {}").format(
                sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)
            )
        )


def lock_down_database(admin, database: str, owner_role: str | None) -> None:
    """Revoke CONNECT and TEMPORARY from PUBLIC, then grant CONNECT to ``owner_role``."""
    from psycopg import sql

    admin.execute(
        sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(database)
        )
    )
    if owner_role is not None:
        admin.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(database), sql.Identifier(owner_role)
            )
        )


def project_url(
    role: str, password: str, info: dict[str, object], database: str
) -> str:
    from sqlalchemy.engine import URL

    url = URL.create(
        "postgresql+psycopg",
        username=role,
        password=password,
        host=info.get("host"),
        port=info.get("port"),
        database=database,
    )
    return url.render_as_string(hide_password=False)


def drop_role(name: str) -> None:
    from psycopg import sql

    with admin_connection() as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def drop_schema(database: str, name: str) -> None:
    from psycopg import sql

    with admin_connection(database) as inside:
        inside.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
        )


def drop_database(database: str) -> None:
    from psycopg import sql

    with admin_connection() as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database)
            )
        )


def leave_shared_database(role: str, database: str, schema: str) -> None:
    """Drop a project's schema from the shared database, and the role's way in.

    A project that moved from tier 2 to tier 3 calls this once its data is safe
    in its own database.
    """
    from psycopg import sql

    drop_schema(database, schema)
    with admin_connection() as admin:
        admin.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} RESET search_path").format(
                sql.Identifier(role), sql.Identifier(database)
            )
        )
        admin.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )


def deprovision(details: dict[str, object]) -> list[str]:
    """Remove a provisioned project: sessions, schema or database, owned objects, role.

    Return one line per step taken.
    """
    from psycopg import sql

    role = str(details["role"])
    database = str(details["database"])
    steps = []
    with admin_connection() as admin:
        if not exists(admin, "SELECT 1 FROM pg_roles WHERE rolname = %s", role):
            raise ManagementError(
                f"no PostgreSQL role named {role!r}; the project is not provisioned on this server"
            )
        admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
        steps.append(f"role {role} can no longer log in")
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s",
            (role,),
        ).fetchone()[0]
        steps.append(f"ended {ended} sessions")
        databases = [
            row[0]
            for row in admin.execute(
                "SELECT datname FROM pg_database WHERE datallowconn"
            )
        ]
        if details["tier"] == "postgres_database":
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(database)
                )
            )
            steps.append(f"dropped database {database}")
            databases = [name for name in databases if name != database]
        else:
            drop_schema(database, str(details["schema"]))
            steps.append(f"dropped schema {details['schema']} in {database}")
        for name in databases:
            with admin_connection(name) as inside:
                inside.execute(
                    sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role))
                )
        steps.append(f"dropped what {role} owned in {len(databases)} databases")
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        steps.append(f"dropped role {role}")
    return steps
