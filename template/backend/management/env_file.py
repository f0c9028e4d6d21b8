"""Write backend/.env, the only place the database password is kept."""

from __future__ import annotations

import os
from pathlib import Path

BACKEND_DIR = Path(__file__).resolve().parent.parent
ENV_FILE = BACKEND_DIR / ".env"
HEADER = "# Database connection for this project. Never commit this file.\n"


def write_env_file(url: str, database_type: str, path: Path = ENV_FILE) -> None:
    """Replace the connection settings in .env atomically, readable by the owner only.

    Lines other than the three connection settings are kept.
    """
    settings = {
        "DATABASE_URL": url,
        "DATABASE_TYPE": database_type,
        "SQLALCHEMY_DATABASE_URL": url,
    }
    other_lines = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key = line.split("=", 1)[0].strip()
            if key not in settings and line + "\n" != HEADER:
                other_lines.append(line)
    lines = [
        HEADER.rstrip("\n"),
        *(f"{key}={value}" for key, value in settings.items()),
        *other_lines,
    ]
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
