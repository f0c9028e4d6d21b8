"""Back the project's database up, list the backups, and restore one.

Backups live in ``backend/backups/``, named ``<database>-<time>-<kind>``.
A SQLite backup is made with ``VACUUM INTO``, which reads one snapshot, so
it contains exactly the rows committed before it started. A PostgreSQL backup
is a ``pg_dump`` archive of the project's schema. Each backup is written
under a temporary name, checked, made read-only and only then renamed, so a
backup file is never half-written.

A restore checks the backup, backs the current state up first, then
replaces the data in one transaction: SQLite's backup API commits the copied
pages at once, and on PostgreSQL ``psql --single-transaction`` drops the
schema's tables and loads the archive's.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from management.errors import ManagementError, UsageError

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parent.parent
BACKUP_DIR = BACKEND_DIR / "backups"
RETENTION_VARIABLE = "BACKUP_RETENTION"
DEFAULT_RETENTION = 10
PARTIAL_SUFFIX = ".partial"
BACKUP_NAME = re.compile(
    r"^(?P<database>.+?)-(?P<time>\d{8}T\d{6}(?:\d{6})?Z)(?:-(?P<copy>\d+))?"
    r"-(?P<kind>[a-z_-]+)\.(?P<format>sqlite|dump|sql)$"
)


@dataclass
class Backup:
    path: Path
    database: str
    kind: str
    taken_at: datetime.datetime
    size_bytes: int

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.path.relative_to(BACKEND_DIR.parent).as_posix(),
            "database": self.database,
            "kind": self.kind,
            "taken_at": self.taken_at.isoformat(timespec="seconds"),
            "size_bytes": self.size_bytes,
        }


def retention(keep: int | None) -> int:
    """Return how many manual backups to keep: ``keep``, BACKUP_RETENTION or 10."""
    if keep is not None:
        return keep
    raw = os.environ.get(RETENTION_VARIABLE)
    if raw is None:
        return DEFAULT_RETENTION
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(
            f"{RETENTION_VARIABLE}={raw!r} is not a whole number of backups to keep; "
            f"set it to 1 or more in backend/.env, for example {RETENTION_VARIABLE}=10"
        )
    return int(raw)


def take_backup(kind: str = "backup", keep: int | None = None) -> Backup:
    """Write a consistent backup of the database into backups/ and return it.

    Manual backups beyond the retention count are removed, oldest first.
    """
    from database import engine

    keep = retention(keep)
    BACKUP_DIR.mkdir(exist_ok=True)
    remove_partial_files()
    if engine.url.get_backend_name() == "sqlite":
        database = live_sqlite_file()
        target = new_backup_path(database.stem, kind, ".sqlite")
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        try:
            connection = sqlite3.connect(database, timeout=30)
            try:
                connection.execute("VACUUM INTO ?", (str(partial),))
            finally:
                connection.close()
            check_sqlite_backup(partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    else:
        from management.postgres_clients import dump_schema

        schema = project_schema(engine)
        target = new_backup_path(schema, kind, ".dump")
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        try:
            dump_schema(engine.url, schema, partial, archive=True)
            check_postgres_backup(partial, schema)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.chmod(0o444)
    os.replace(partial, target)
    if kind == "backup":
        prune(keep)
    return describe(target)


def live_sqlite_file() -> Path:
    from management.sqlite_files import sqlite_path

    database = sqlite_path()
    if database is None:
        raise UsageError("the database is in memory; there is no file to back up")
    if not database.exists():
        raise ManagementError(
            f"the database file {database} does not exist; run python manage.py init"
        )
    return database


def project_schema(engine: sa.Engine) -> str:
    with engine.connect() as connection:
        return connection.scalar(sa.text("SELECT current_schema()"))


def new_backup_path(database: str, kind: str, suffix: str) -> Path:
    """Return a free path in backups/ named after the database, the time and the kind."""
    BACKUP_DIR.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = BACKUP_DIR / f"{database}-{stamp}-{kind}{suffix}"
    copy = 2
    while target.exists():
        target = BACKUP_DIR / f"{database}-{stamp}-{copy}-{kind}{suffix}"
        copy += 1
    return target


def remove_partial_files() -> None:
    """Delete what a backup killed halfway left behind."""
    for leftover in BACKUP_DIR.glob(f"*{PARTIAL_SUFFIX}"):
        logger.info("Removing the unfinished backup %s", leftover.name)
        leftover.unlink()


def check_sqlite_backup(path: Path) -> str | None:
    """Raise ManagementError unless ``path`` is a sound SQLite database; return its revision."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = connection.execute("PRAGMA integrity_check").fetchall()
            tables = {
                row[0]
                for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            revision = None
            if "alembic_version" in tables:
                row = connection.execute(
                    "SELECT version_num FROM alembic_version"
                ).fetchone()
                revision = row[0] if row else None
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise ManagementError(
            f"{display(path)} is not a readable SQLite database ({error}); "
            "choose another file from python manage.py backups"
        ) from None
    if verdict != [("ok",)]:
        raise ManagementError(
            f"{display(path)} fails SQLite's integrity check ({verdict[0][0]}); "
            "choose another file from python manage.py backups"
        )
    check_revision(path, revision)
    return revision


def check_revision(path: Path, revision: str | None) -> None:
    """Raise ManagementError unless ``revision`` is one of this project's migrations."""
    from alembic.util import CommandError

    from management.migrations import script_directory

    if revision is None:
        raise ManagementError(
            f"{display(path)} has no migration revision, so it is not a backup of "
            "this project; choose another file from python manage.py backups"
        )
    try:
        known = script_directory().get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise ManagementError(
            f"{display(path)} is at revision {revision}, which backend/migrations/"
            "versions/ does not have; choose another file from python manage.py backups"
        )


def check_postgres_backup(path: Path, schema: str) -> None:
    """Raise ManagementError unless ``path`` is a pg_dump archive of ``schema``."""
    from management.postgres_clients import run_client

    try:
        listing = run_client("pg_restore", ["--list", str(path)])
    except ManagementError as error:
        raise ManagementError(
            f"{display(path)} is not a readable pg_dump archive ({error}); "
            "choose another file from python manage.py backups"
        ) from None
    if f" SCHEMA - {schema} " not in listing:
        raise ManagementError(
            f"{display(path)} is not a backup of schema {schema}; "
            "choose another file from python manage.py backups"
        )
    if f" TABLE DATA {schema} alembic_version " not in listing:
        raise ManagementError(
            f"{display(path)} has no migration revision, so it is not a backup of "
            "this project; choose another file from python manage.py backups"
        )


def list_backups() -> list[Backup]:
    """Return every backup in backups/, newest first."""
    if not BACKUP_DIR.exists():
        return []
    found = [describe(path) for path in BACKUP_DIR.iterdir() if is_backup(path)]
    return sorted(
        found, key=lambda backup: (backup.taken_at, backup.path.name), reverse=True
    )


def is_backup(path: Path) -> bool:
    return path.is_file() and BACKUP_NAME.match(path.name) is not None


def describe(path: Path) -> Backup:
    match = BACKUP_NAME.match(path.name)
    if match is None:
        raise UsageError(
            f"{display(path)} is not named like a backup; choose a file from "
            "python manage.py backups"
        )
    stamp = match["time"]
    layout = "%Y%m%dT%H%M%S%fZ" if len(stamp) > 16 else "%Y%m%dT%H%M%SZ"
    taken_at = datetime.datetime.strptime(stamp, layout).replace(
        tzinfo=datetime.timezone.utc
    )
    return Backup(path, match["database"], match["kind"], taken_at, path.stat().st_size)


def prune(keep: int) -> list[Path]:
    """Remove manual backups beyond the newest ``keep``; return what was removed."""
    manual = [backup for backup in list_backups() if backup.kind == "backup"]
    removed = []
    for backup in manual[keep:]:
        backup.path.chmod(0o644)
        backup.path.unlink()
        removed.append(backup.path)
    return removed


def restore_backup(file: str) -> dict[str, object]:
    """Check ``file``, back the current state up, then put the backup's data in place."""
    from database import engine

    path = resolve(file)
    describe(path)
    if engine.url.get_backend_name() == "sqlite":
        if path.suffix != ".sqlite":
            raise UsageError(
                f"{display(path)} is not a SQLite backup (.sqlite) and this project "
                "runs on SQLite; choose a .sqlite file from python manage.py backups"
            )
        check_sqlite_backup(path)
        database = live_sqlite_file()
        safety = take_backup("before-restore")
        restore_sqlite(path, database)
    else:
        if path.suffix != ".dump":
            raise UsageError(
                f"{display(path)} is not a PostgreSQL backup (.dump) and this project "
                "runs on PostgreSQL; choose a .dump file from python manage.py backups"
            )
        schema = project_schema(engine)
        check_postgres_backup(path, schema)
        safety = take_backup("before-restore")
        restore_postgres(engine, path, schema)
    from management.migrations import current_revision, head_revision

    return {
        "restored": display(path),
        "safety_backup": safety.as_dict(),
        "revision": current_revision(),
        "head": head_revision(),
    }


def resolve(file: str) -> Path:
    """Find ``file`` as given, or by name in backups/."""
    # As given, as a name in backups/, or as `backups` prints it, from the
    # project's root folder.
    for candidate in (Path(file), BACKUP_DIR / file, BACKEND_DIR.parent / file):
        if candidate.is_file():
            return candidate.resolve()
    raise UsageError(
        f"no backup file {file!r} here or in backend/backups/; give a file name "
        "from python manage.py backups"
    )


def restore_sqlite(backup: Path, database: Path) -> None:
    """Copy the backup's pages over the live database; they are committed at once."""
    from database import engine

    engine.dispose()
    source = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(database, timeout=30)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def restore_postgres(engine: sa.Engine, backup: Path, schema: str) -> None:
    """Replace the schema's tables with the archive's, in one transaction."""
    from psycopg import sql

    from management.postgres_clients import run_client

    listing = run_client("pg_restore", ["--list", str(backup)])
    # The schema itself stays: the project's role may not create one.
    entries = "\n".join(
        line for line in listing.splitlines() if f" SCHEMA - {schema} " not in line
    )
    list_file = backup.with_name(f".{backup.name}.list")
    BACKUP_DIR.mkdir(exist_ok=True)
    list_file.write_text(entries + "\n", encoding="utf-8")
    try:
        script = run_client(
            "pg_restore",
            [
                "--use-list",
                str(list_file),
                "--no-owner",
                "--no-privileges",
                "--file",
                "-",
                str(backup),
            ],
        )
    finally:
        list_file.unlink(missing_ok=True)
    with engine.connect() as connection:
        tables = connection.scalars(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
            {"schema": schema},
        ).all()
        sequences = connection.scalars(
            sa.text("SELECT sequencename FROM pg_sequences WHERE schemaname = :schema"),
            {"schema": schema},
        ).all()
        raw = connection.connection.driver_connection
        drops = [
            sql.SQL("DROP TABLE IF EXISTS {} CASCADE;")
            .format(sql.Identifier(schema, table))
            .as_string(raw)
            for table in tables
        ] + [
            sql.SQL("DROP SEQUENCE IF EXISTS {} CASCADE;")
            .format(sql.Identifier(schema, sequence))
            .as_string(raw)
            for sequence in sequences
        ]
    engine.dispose()
    run_client(
        "psql",
        [
            "--no-psqlrc",
            "--quiet",
            "--single-transaction",
            "--set",
            "ON_ERROR_STOP=1",
            "--file",
            "-",
        ],
        url=engine.url,
        input_text="\n".join(drops) + "\n" + script,
    )


def display(path: Path) -> str:
    try:
        return path.resolve().relative_to(BACKEND_DIR.parent).as_posix()
    except ValueError:
        return str(path)
