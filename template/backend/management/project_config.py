"""``db_config.json``: metadata about the project's database, never a secret."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
CONFIG_FILE = PROJECT_DIR / "db_config.json"

TIERS = {
    "sqlite": "sqlite",
    "postgres_schema": "postgresql",
    "postgres_database": "postgresql",
}


def read_config() -> dict[str, Any]:
    if not CONFIG_FILE.exists():
        return {}
    return json.loads(CONFIG_FILE.read_text(encoding="utf-8"))


def describe_database(url: URL, backend_dir: Path) -> dict[str, Any]:
    """Return where the database lives, with no password or user name."""
    if url.get_backend_name() == "sqlite":
        database = url.database or ":memory:"
        path = Path(database)
        if path.is_absolute() and path.is_relative_to(backend_dir):
            database = path.relative_to(backend_dir).as_posix()
        return {"database_type": "sqlite", "database_file": f"backend/{database}"}
    return {
        "database_type": "postgresql",
        "host": url.host,
        "port": url.port,
        "database": url.database,
    }


def write_config(
    updates: dict[str, Any], *, remove: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Merge ``updates`` into db_config.json and drop the ``remove`` keys, atomically."""
    config = read_config()
    config.update(updates)
    for key in remove:
        config.pop(key, None)
    config.setdefault("created_at", utc_timestamp())
    temporary = CONFIG_FILE.with_name(f".{CONFIG_FILE.name}.tmp")
    temporary.write_text(
        json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    os.replace(temporary, CONFIG_FILE)
    return config


def utc_timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
