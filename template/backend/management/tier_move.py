"""Move a project's data from SQLite to a PostgreSQL tier, all or nothing.

First the source is checked: it must be at head, with no orphaned foreign key
and no value PostgreSQL would reject. Then the target is provisioned and
Alembic builds its schema. The rows are copied table by table, in foreign key
order, inside one target transaction with COPY, and every sequence is set past
the copied keys. Row counts and digests are compared, and only then does
``backend/.env`` point at the target. Any failure drops what was provisioned
and leaves the project on SQLite, untouched.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from management.data_copy import copy_table, preflight, reset_sequences, table_digest
from management.errors import ManagementError, UsageError

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parent.parent


@dataclass
class MoveResult:
    """Outcome of a tier move: per-table row counts and where the old data went."""

    source_tier: str
    target_tier: str
    rows: dict[str, int] = field(default_factory=dict)
    backup: str | None = None


def migrate_target(url: str) -> None:
    """Build the target's schema with Alembic, in a process that reads the target URL."""
    environment = {**os.environ, "DATABASE_URL": url}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(BACKEND_DIR / "alembic.ini"),
            "upgrade",
            "head",
        ],
        cwd=BACKEND_DIR,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        detail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise ManagementError(
            f"alembic upgrade head on the new database failed: {detail}"
        )


def move_to_postgres(target_tier: str) -> MoveResult:
    """Move the SQLite project to ``target_tier``; see the module docstring for the steps."""
    import psycopg

    import models
    from database import engine as source
    from management import project_config
    from management.env_file import write_env_file
    from management.migrations import current_revision, head_revision
    from management.provisioning import deprovision, provision
    from management.sqlite_files import sqlite_path

    config = project_config.read_config()
    if source.url.get_backend_name() != "sqlite":
        raise UsageError(
            "only a SQLite project can move up for now; this project is on "
            f"{config.get('tier', 'postgresql')}"
        )
    if current_revision() != head_revision():
        raise ManagementError(
            f"the database is at revision {current_revision()}, not at head "
            f"{head_revision()}; run python manage.py migrate first"
        )
    metadata = models.Base.metadata
    preflight(source, metadata)

    slug = config.get("project") or BACKEND_DIR.parent.name
    target = provision(target_tier, slug)
    result = MoveResult(
        source_tier=config.get("tier", "sqlite"), target_tier=target_tier
    )
    try:
        migrate_target(target.url)
        target_url = target.url.replace("postgresql+psycopg://", "postgresql://", 1)
        target_engine = sa.create_engine(target.url, poolclass=sa.pool.NullPool)
        # BEGIN IMMEDIATE holds SQLite's write lock for the whole copy, so no
        # request can write a row that the copy would miss.
        with (
            source.connect().execution_options(sqlite_write=True) as reader,
            reader.begin(),
        ):
            with psycopg.connect(target_url) as writer, writer.cursor() as cursor:
                for table in metadata.sorted_tables:
                    result.rows[table.name] = copy_table(reader, cursor, table)
                reset_sequences(cursor, metadata)
                writer.commit()
                writer.autocommit = True
                writer.execute("ANALYZE")
            with target_engine.connect() as checker:
                for table in metadata.sorted_tables:
                    before = table_digest(reader, table)
                    after = table_digest(checker, table)
                    if before != after:
                        raise ManagementError(
                            f"table {table.name} differs after the copy ({before[0]} rows "
                            f"before, {after[0]} after); the project stays on SQLite"
                        )
        target_engine.dispose()
    except BaseException:
        deprovision(target.public_details())
        raise

    result.backup = retire_sqlite(sqlite_path(), target_tier)
    write_env_file(target.url, "postgresql")
    history = list(config.get("tier_history", []))
    history.append(
        {
            "from": result.source_tier,
            "to": target_tier,
            "at": project_config.utc_timestamp(),
            "rows": sum(result.rows.values()),
            "backup": result.backup,
        }
    )
    project_config.write_config(
        {
            "tier": target_tier,
            "database_type": "postgresql",
            "database": target.database,
            "schema": target.schema,
            "host": target.host,
            "port": target.port,
            "database_file": None,
            "provisioning": target.public_details(),
            "tier_history": history,
        }
    )
    return result


def retire_sqlite(database: Path, target_tier: str) -> str:
    """Copy the old SQLite database into backups/ read-only and remove the live file."""
    from management.migrations import BACKUP_DIR
    from management.sqlite_files import copy_sqlite, remove_sqlite_files

    BACKUP_DIR.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup = BACKUP_DIR / f"{database.stem}-{stamp}-before-{target_tier}.sqlite"
    copy_sqlite(database, backup)
    backup.chmod(0o444)
    remove_sqlite_files(database)
    return backup.relative_to(BACKEND_DIR.parent).as_posix()
