"""manage.py backup, backups and restore, on SQLite and on a PostgreSQL schema."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import threading
import time

import psycopg
import pytest

from scripts.projects import clean_env
from tests.conftest import link_venv

# Rows each writer transaction inserts; a backup contains whole batches only.
BATCH_ROWS = 10
# Upper bound on the background writer, in seconds.
MAX_WRITE_SECONDS = 30


def manage(backend, *args, **extra_env):
    return subprocess.run(
        [".venv/bin/python", "manage.py", *args],
        cwd=backend,
        env=clean_env(**extra_env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def titles(database) -> list[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return [
            row[0] for row in connection.execute("SELECT title FROM book ORDER BY id")
        ]


@pytest.fixture
def project(render, project_python):
    path = render({"project_slug": "backed-up"}, name="backed-up")
    link_venv(path, project_python)
    return path


def test_backup_lists_and_restores(project):
    backend = project / "backend"
    database = backend / "database.sqlite"
    before = titles(database)

    backed_up = manage(backend, "--json", "backup")
    assert backed_up.returncode == 0, backed_up.stderr
    backup = json.loads(backed_up.stdout)["backup"]
    assert backup["kind"] == "backup"
    backup_file = project / backup["file"]
    assert backup_file.parent == backend / "backups"
    assert backup_file.stat().st_mode & 0o777 == 0o444
    assert titles(backup_file) == before

    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM book")
        connection.execute("INSERT INTO book (title, author_id) VALUES ('After', 1)")
    listed = manage(backend, "--json", "backups")
    assert listed.returncode == 0, listed.stderr
    assert [entry["file"] for entry in json.loads(listed.stdout)["backups"]] == [
        backup["file"]
    ]

    # The file as `backups` prints it, relative to the project's root folder.
    restored = manage(backend, "--json", "restore", backup["file"])
    assert restored.returncode == 0, restored.stderr
    outcome = json.loads(restored.stdout)
    assert outcome["restored"] == backup["file"]
    assert outcome["revision"] == outcome["head"]
    assert titles(database) == before
    safety = project / outcome["safety_backup"]["file"]
    assert outcome["safety_backup"]["kind"] == "before-restore"
    assert titles(safety) == ["After"]
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_retention_keeps_the_newest_manual_backups(project):
    backend = project / "backend"
    names = []
    for _ in range(3):
        backed_up = manage(backend, "--json", "backup", "--keep", "2")
        assert backed_up.returncode == 0, backed_up.stderr
        names.append(json.loads(backed_up.stdout)["backup"]["file"])
    listed = json.loads(manage(backend, "--json", "backups").stdout)["backups"]
    assert [entry["file"] for entry in listed] == [names[2], names[1]]

    configured = manage(backend, "--json", "backup", BACKUP_RETENTION="1")
    assert configured.returncode == 0, configured.stderr
    listed = json.loads(manage(backend, "--json", "backups").stdout)["backups"]
    assert [entry["file"] for entry in listed] == [
        json.loads(configured.stdout)["backup"]["file"]
    ]

    bad = manage(backend, "backup", BACKUP_RETENTION="many")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: BACKUP_RETENTION='many' is not a whole number of backups to keep; "
        "set it to 1 or more in backend/.env, for example BACKUP_RETENTION=10"
    )
    zero = manage(backend, "backup", "--keep", "0")
    assert zero.returncode == 2
    assert zero.stderr.splitlines()[-1] == (
        "manage.py backup: error: argument --keep: '0' is not a whole number of "
        "backups to keep, 1 or more"
    )


def test_backup_during_writes_holds_whole_committed_batches(project):
    backend = project / "backend"
    database = backend / "database.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM book")
    committed = []
    stop = threading.Event()

    def write_batches():
        connection = sqlite3.connect(database, timeout=30)
        deadline = time.monotonic() + MAX_WRITE_SECONDS
        batch = 0
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                batch += 1
                with connection:
                    connection.executemany(
                        "INSERT INTO book (title, author_id) VALUES (?, 1)",
                        [(f"batch {batch}",)] * BATCH_ROWS,
                    )
                committed.append(batch)
        finally:
            connection.close()

    writer = threading.Thread(target=write_batches)
    writer.start()
    try:
        while len(committed) < 20:
            time.sleep(0.01)
        before_start = len(committed)
        backed_up = manage(backend, "--json", "backup")
        after_end = len(committed)
    finally:
        stop.set()
        writer.join()
    assert backed_up.returncode == 0, backed_up.stderr
    backup_file = project / json.loads(backed_up.stdout)["backup"]["file"]
    with sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        batches = copy.execute(
            "SELECT title, count(*) FROM book GROUP BY title ORDER BY min(id)"
        ).fetchall()
    batches_kept = len(batches)
    assert batches == [
        (f"batch {number}", BATCH_ROWS) for number in range(1, batches_kept + 1)
    ]
    assert before_start <= batches_kept <= after_end


def test_restore_refuses_bad_files_and_changes_nothing(project):
    backend = project / "backend"
    database = backend / "database.sqlite"
    backed_up = manage(backend, "--json", "backup")
    backup_file = project / json.loads(backed_up.stdout)["backup"]["file"]
    live = digest(database)

    missing = manage(backend, "restore", "nope.sqlite")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "error: no backup file 'nope.sqlite' here or in backend/backups/; give a "
        "file name from python manage.py backups"
    )

    damaged = backend / "backups" / "database-20260101T000000Z-backup.sqlite"
    data = bytearray(backup_file.read_bytes())
    data[:16] = b"not a database!!"
    damaged.write_bytes(bytes(data))
    refused = manage(backend, "restore", damaged.name)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: backend/backups/database-20260101T000000Z-backup.sqlite is not a "
        "readable SQLite database (file is not a database); choose another file "
        "from python manage.py backups"
    )

    empty = backend / "backups" / "database-20260102T000000Z-backup.sqlite"
    with sqlite3.connect(empty) as connection:
        connection.execute("CREATE TABLE other (id integer)")
    connection.close()
    not_ours = manage(backend, "restore", empty.name)
    assert not_ours.returncode == 1
    assert not_ours.stderr.strip() == (
        "error: backend/backups/database-20260102T000000Z-backup.sqlite has no "
        "migration revision, so it is not a backup of this project; choose another "
        "file from python manage.py backups"
    )

    foreign = backend / "backups" / "database-20260103T000000Z-backup.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num varchar(32))")
        connection.execute("INSERT INTO alembic_version VALUES ('0123abcd')")
    connection.close()
    unknown = manage(backend, "restore", foreign.name)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "error: backend/backups/database-20260103T000000Z-backup.sqlite is at "
        "revision 0123abcd, which backend/migrations/versions/ does not have; "
        "choose another file from python manage.py backups"
    )

    wrong_kind = manage(backend, "restore", "database.sqlite")
    assert wrong_kind.returncode == 2
    assert wrong_kind.stderr.strip() == (
        "error: backend/database.sqlite is not named like a backup; choose a file "
        "from python manage.py backups"
    )
    assert digest(database) == live
    kinds = [
        entry["kind"]
        for entry in json.loads(manage(backend, "--json", "backups").stdout)["backups"]
    ]
    assert "before-restore" not in kinds


def test_damaged_database_error_names_restore(project):
    backend = project / "backend"
    database = backend / "database.sqlite"
    manage(backend, "backup")
    database.write_bytes(b"this is not a database" * 200)
    checked = manage(backend, "check")
    assert checked.returncode == 1
    assert checked.stderr.strip() == (
        f"error: the SQLite database {database} is damaged or not a database "
        "(file is not a database); restore a backup with python manage.py restore "
        "FILE, choosing FILE from python manage.py backups"
    )


@pytest.mark.postgres
def test_schema_backup_and_restore(render, project_python, postgres_server):
    project = render({"project_slug": "saved-on-pg"}, name="saved-on-pg")
    link_venv(project, project_python)
    backend = project / "backend"
    admin = postgres_server.admin_url
    moved = manage(
        backend, "upgrade", "--to", "postgres_schema", ADMIN_DATABASE_URL=admin
    )
    assert moved.returncode == 0, moved.stderr
    url = (backend / ".env").read_text().splitlines()[1].split("=", 1)[1]
    url = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        before = connection.execute("SELECT id, title FROM book ORDER BY id").fetchall()

    backed_up = manage(backend, "--json", "backup")
    assert backed_up.returncode == 0, backed_up.stderr
    backup = json.loads(backed_up.stdout)["backup"]
    assert backup["file"].endswith("-backup.dump")
    assert backup["database"] == "saved_on_pg"

    with psycopg.connect(url) as connection:
        connection.execute("DELETE FROM book")
        connection.execute("INSERT INTO book (title, author_id) VALUES ('After', 1)")
        connection.execute("CREATE TABLE stray (id integer)")

    restored = manage(backend, "--json", "restore", backup["file"].split("/")[-1])
    assert restored.returncode == 0, restored.stdout + restored.stderr
    outcome = json.loads(restored.stdout)
    assert outcome["revision"] == outcome["head"]
    with psycopg.connect(url) as connection:
        assert (
            connection.execute("SELECT id, title FROM book ORDER BY id").fetchall()
            == before
        )
        assert connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'saved_on_pg'"
        ).fetchone() == (3,)
        next_id = connection.execute(
            "INSERT INTO book (title, author_id) VALUES ('Next', 1) RETURNING id"
        ).fetchone()[0]
    assert next_id == max(row[0] for row in before) + 1
    check = manage(backend, "check")
    assert check.returncode == 0, check.stderr
    manage(backend, "deprovision", "--yes", ADMIN_DATABASE_URL=admin)
