"""Put the project's generated files and its SQLite database back after a failed action."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from management.sqlite_files import copy_sqlite

logger = logging.getLogger(__name__)

# Files and folders an action may change, relative to backend/; folders are taken whole.
WATCHED_FILES = ("models.py", "schemas.py", "../db_config.json")
WATCHED_FOLDERS = ("routers", "tests", "migrations/versions", "seeds")


class ProjectSnapshot:
    """The watched files and the SQLite database as they were on entering.

    Leaving the ``with`` block through an exception restores both, so a failed
    action leaves the project exactly as it found it.
    """

    def __init__(self, backend_dir: Path, database: Path | None) -> None:
        self.backend_dir = backend_dir
        self.database = database
        # The content of every watched file; None for a file that did not exist.
        self.files: dict[Path, bytes | None] = {}
        self.workdir: Path | None = None
        self.database_copy: Path | None = None

    def __enter__(self) -> ProjectSnapshot:
        for relative in WATCHED_FILES:
            path = (self.backend_dir / relative).resolve()
            self.files[path] = path.read_bytes() if path.exists() else None
        for folder in self.folders():
            for path in watched_files_in(folder):
                self.files[path] = path.read_bytes()
        if self.database is not None and self.database.exists():
            self.workdir = Path(tempfile.mkdtemp(prefix="action-snapshot-"))
            self.database_copy = self.workdir / "database.sqlite"
            copy_sqlite(self.database, self.database_copy)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                self.restore()
        finally:
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def folders(self) -> list[Path]:
        return [self.backend_dir / relative for relative in WATCHED_FOLDERS]

    def restore(self) -> None:
        """Write every watched file back, delete new ones, and restore the database."""
        for folder in self.folders():
            for path in watched_files_in(folder):
                if path not in self.files:
                    path.unlink()
        for path, content in self.files.items():
            if content is None:
                path.unlink(missing_ok=True)
            elif not path.exists() or path.read_bytes() != content:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        if self.database_copy is not None:
            from database import engine

            engine.dispose()
            copy_sqlite(self.database_copy, self.database)
        logger.info("Restored the project files and database after a failed action")


def watched_files_in(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return [
        path
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
