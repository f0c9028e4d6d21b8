"""Commands killed with SIGKILL halfway through.

The database must still open, at the state before or after the command and
never in between, and running the command again must finish the job.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import time

import psycopg
import pytest

from scripts.projects import clean_env
from tests.conftest import link_venv

READINGS = 600_000
MODELS = [
    {"name": "Reading", "fields": {"value": "integer required", "note": "string(50)"}}
]
# Upper bound on waiting for a command to reach the point where it is killed.
MAX_WAIT_SECONDS = 120


def command(backend, *args, **extra_env):
    return [".venv/bin/python", "manage.py", *args], {
        "cwd": backend,
        "env": clean_env(**extra_env),
    }


def manage(backend, *args, **extra_env):
    argv, options = command(backend, *args, **extra_env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **options)


def kill_when(backend, args, ready, *, delay: float, **extra_env) -> int:
    """Start manage.py ARGS, wait until ``ready()``, wait ``delay`` more, SIGKILL it."""
    argv, options = command(backend, *args, **extra_env)
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **options
    )
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    try:
        while not ready() and process.poll() is None:
            assert time.monotonic() < deadline, "the command never got there"
            time.sleep(0.005)
        time.sleep(delay)
    finally:
        process.send_signal(signal.SIGKILL)
        returncode = process.wait(timeout=60)
    return returncode


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def readings(database) -> tuple[int, int]:
    """Return the row count and the note column's declared type, after an integrity check."""
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        count = connection.execute("SELECT count(*) FROM reading").fetchone()[0]
        note_type = next(
            row[2]
            for row in connection.execute("PRAGMA table_info(reading)")
            if row[1] == "note"
        )
    return count, note_type


def revision(database) -> str:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[
            0
        ]


@pytest.fixture
def project(render, project_python, request):
    name = request.node.name.split("[")[0].replace("_", "-")[5:40]
    path = render({"models": MODELS, "project_slug": name}, name=name, seed=False)
    link_venv(path, project_python)
    with sqlite3.connect(path / "backend" / "database.sqlite") as connection:
        connection.executemany(
            "INSERT INTO reading (value, note) VALUES (?, ?)",
            ((number, f"note {number}") for number in range(READINGS)),
        )
    return path


def test_killed_migrate_leaves_old_or_new_schema(project):
    backend = project / "backend"
    database = backend / "database.sqlite"
    old_revision = revision(database)
    widened = manage(
        backend,
        "create-model",
        "--name",
        "Reading",
        "--field",
        "value: integer required",
        "--field",
        "note: string(80)",
        "--replace",
    )
    assert widened.returncode == 0, widened.stderr
    versions = backend / "migrations" / "versions"
    before = set(versions.glob("*.py"))

    returncode = kill_when(
        backend,
        ["migrate", "-m", "widen note"],
        lambda: set(versions.glob("*.py")) - before,
        delay=0.2,
    )
    assert returncode == -signal.SIGKILL
    count, note_type = readings(database)
    assert count == READINGS
    assert (revision(database), note_type) in {
        (old_revision, "VARCHAR(50)"),
    } | {
        (path.stem.split("_")[0], "VARCHAR(80)")
        for path in set(versions.glob("*.py")) - before
    }

    finished = manage(backend, "migrate", "-m", "widen note")
    assert finished.returncode == 0, finished.stderr
    assert readings(database) == (READINGS, "VARCHAR(80)")
    assert manage(backend, "check").returncode == 0


def test_killed_seed_adds_all_rows_or_none(project):
    backend = project / "backend"
    database = backend / "database.sqlite"
    target = READINGS + 200_000
    returncode = kill_when(
        backend,
        ["seed", "--model", "Reading", "--count", str(target)],
        lambda: True,
        delay=2.0,
    )
    assert returncode == -signal.SIGKILL
    assert readings(database)[0] in {READINGS, target}

    finished = manage(backend, "seed", "--model", "Reading", "--count", str(target))
    assert finished.returncode == 0, finished.stderr
    assert readings(database)[0] == target


def test_killed_backup_leaves_no_backup_and_runs_again(project):
    backend = project / "backend"
    database = backend / "database.sqlite"
    live = digest(database)
    backups = backend / "backups"
    returncode = kill_when(
        backend, ["backup"], lambda: any(backups.glob("*.partial")), delay=0.05
    )
    assert returncode == -signal.SIGKILL
    assert digest(database) == live
    listed = json.loads(manage(backend, "--json", "backups").stdout)["backups"]
    assert listed == []

    finished = manage(backend, "--json", "backup")
    assert finished.returncode == 0, finished.stderr
    assert list(backups.glob("*.partial")) == []
    backed_up = project / json.loads(finished.stdout)["backup"]["file"]
    assert readings(backed_up) == (READINGS, "VARCHAR(50)")


def test_killed_restore_leaves_old_or_restored_data(project):
    backend = project / "backend"
    database = backend / "database.sqlite"
    backed_up = manage(backend, "--json", "backup")
    backup = json.loads(backed_up.stdout)["backup"]["file"].split("/")[-1]
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM reading WHERE value % 2 = 0")
    halved = READINGS // 2
    backups = backend / "backups"

    for ready, delay in (
        (lambda: any(backups.glob("*before-restore*.partial")), 0.05),
        (lambda: any(backups.glob("*before-restore.sqlite")), 0.0),
    ):
        kill_when(backend, ["restore", backup], ready, delay=delay)
        assert readings(database)[0] in {halved, READINGS}

    finished = manage(backend, "restore", backup)
    assert finished.returncode == 0, finished.stderr
    assert readings(database) == (READINGS, "VARCHAR(50)")


@pytest.mark.postgres
def test_killed_upgrade_stays_on_sqlite_then_moves(project, postgres_server):
    backend = project / "backend"
    database = backend / "database.sqlite"
    admin = postgres_server.admin_url
    env_before = (backend / ".env").read_bytes()
    live = digest(database)
    config = project / "db_config.json"

    returncode = kill_when(
        backend,
        ["upgrade", "--to", "postgres_schema"],
        lambda: "move_in_progress" in config.read_text(),
        delay=1.5,
        ADMIN_DATABASE_URL=admin,
    )
    assert returncode == -signal.SIGKILL
    assert (backend / ".env").read_bytes() == env_before
    assert digest(database) == live
    assert json.loads(config.read_text())["tier"] == "sqlite"

    finished = manage(
        backend,
        "--json",
        "upgrade",
        "--to",
        "postgres_schema",
        ADMIN_DATABASE_URL=admin,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert json.loads(finished.stdout)["rows"] == {"reading": READINGS}
    assert "move_in_progress" not in json.loads(config.read_text())
    url = (backend / ".env").read_text().splitlines()[1].split("=", 1)[1]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as pg:
        assert pg.execute("SELECT count(*) FROM reading").fetchone() == (READINGS,)
    manage(backend, "deprovision", "--yes", ADMIN_DATABASE_URL=admin)
