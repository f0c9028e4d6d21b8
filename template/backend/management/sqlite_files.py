"""The project's SQLite database file: where it is, consistent copies, removal."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def sqlite_path() -> Path | None:
    """Return the SQLite file DATABASE_URL names, or None on PostgreSQL or in memory."""
    from database import engine

    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def copy_sqlite(source_path: Path, target_path: Path) -> None:
    """Copy one SQLite database over another with the backup API.

    A file copy of a live WAL database can miss committed rows; the backup
    API copies a consistent state.
    """
    source = sqlite3.connect(source_path)
    try:
        target = sqlite3.connect(target_path)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def remove_sqlite_files(path: Path) -> None:
    """Close the engine's connections, then delete the database and its WAL files."""
    from database import engine

    engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
