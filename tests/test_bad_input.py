"""Bad command arguments, model specs and environment values: each gets its own
one-line error and exit status, and no file or row changes.

Invalid Copier answers are in tests/test_copier_answers.py, and malformed or
dangerous action tags in tests/test_action_corpus.py.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess

import pytest

from scripts.projects import clean_env
from tests.conftest import link_venv

# Folders whose contents the commands may change without changing the project.
SKIPPED_PARTS = {".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}

CASES = [
    # (id, manage.py arguments, environment, exit status, last line of stderr)
    (
        "status-sample-word",
        ["status", "--sample", "soon"],
        {},
        2,
        "manage.py status: error: argument --sample: 'soon' is not a number of "
        "seconds from 0 to 60, for example 2",
    ),
    (
        "seed-negative-count",
        ["seed", "--model", "Book", "--count", "-5"],
        {},
        2,
        "error: --count must be at least 1, got -5",
    ),
    (
        "seed-unknown-model",
        ["seed", "--model", "Nope", "--count", "3"],
        {},
        2,
        "error: unknown model 'Nope'; use one of Author, Book, or the table name of one",
    ),
    (
        "seed-missing-file",
        ["seed", "--file", "nope.json"],
        {},
        1,
        "error: seed file 'nope.json' not found in backend/seeds/ (files there: "
        "author.json, book.json); check the name or add the file",
    ),
    (
        "crud-unknown-model",
        ["create-crud", "--model", "Nope"],
        {},
        2,
        "error: model Nope is not defined in models.py; create it first with "
        "create-model, or use one of Author, Book",
    ),
    (
        "crud-model-and-all",
        ["create-crud", "--model", "Book", "--all"],
        {},
        2,
        "error: give --model NAME (repeatable) or --all, not both and not neither",
    ),
    (
        "model-field-without-colon",
        ["create-model", "--name", "Shelf", "--field", "label string(20)"],
        {},
        1,
        "error: model Shelf: field line 'label string(20)' is not of the form "
        "'name: type [modifier ...]'; fix: write each field as name: type, for "
        "example title: string(200) required",
    ),
    (
        "model-unknown-type",
        ["create-model", "--name", "Shelf", "--field", "label: varchar(20)"],
        {},
        1,
        "error: model Shelf, field label: unknown type 'varchar(20)'; fix: use one "
        "of string(n), text, integer, bigint, float, decimal(p,s), boolean, date, "
        "datetime, time, uuid, json, bytes, enum(a,b,...), ref(Model), many(Model)",
    ),
    (
        "model-spec-and-name",
        ["create-model", "--spec", "models.json", "--name", "Shelf"],
        {},
        2,
        "error: give either --spec FILE or --name with --field, not both",
    ),
    (
        "migrate-unknown-option",
        ["migrate", "--force"],
        {},
        2,
        "manage.py: error: unrecognized arguments: --force",
    ),
    (
        "upgrade-to-sqlite",
        ["upgrade", "--to", "sqlite"],
        {},
        2,
        "manage.py upgrade: error: argument --to: invalid choice: 'sqlite' (choose "
        "from 'postgres_schema', 'postgres_database')",
    ),
    (
        "upgrade-without-admin-url",
        ["upgrade", "--to", "postgres_schema"],
        {},
        2,
        "error: ADMIN_DATABASE_URL is not set; export the URL of a PostgreSQL "
        "superuser or of a role with CREATEROLE and CREATEDB, such as "
        "postgresql://admin:PASSWORD@127.0.0.1:5432/postgres",
    ),
    (
        "upgrade-admin-url-not-postgres",
        ["upgrade", "--to", "postgres_schema"],
        {"ADMIN_DATABASE_URL": "mysql://root@127.0.0.1/mysql"},
        2,
        "error: ADMIN_DATABASE_URL must be a postgresql:// URL, not mysql://",
    ),
    (
        "restore-without-file",
        ["restore"],
        {},
        2,
        "manage.py restore: error: the following arguments are required: file",
    ),
    (
        "restore-live-database",
        ["restore", "database.sqlite"],
        {},
        2,
        "error: backend/database.sqlite is not named like a backup; choose a file "
        "from python manage.py backups",
    ),
    (
        "backup-keep-zero",
        ["backup", "--keep", "0"],
        {},
        2,
        "manage.py backup: error: argument --keep: '0' is not a whole number of "
        "backups to keep, 1 or more",
    ),
    (
        "backup-retention-word",
        ["backup"],
        {"BACKUP_RETENTION": "all"},
        2,
        "error: BACKUP_RETENTION='all' is not a whole number of backups to keep; "
        "set it to 1 or more in backend/.env, for example BACKUP_RETENTION=10",
    ),
    (
        "deprovision-sqlite-project",
        ["deprovision", "--yes"],
        {},
        2,
        "error: db_config.json records no provisioning; nothing to remove",
    ),
    (
        "database-url-mysql",
        ["check"],
        {"DATABASE_URL": "mysql://root@127.0.0.1/shop"},
        2,
        "error: DATABASE_URL uses the unsupported backend 'mysql'; use sqlite:/// "
        "or postgresql+psycopg://",
    ),
    (
        "database-url-missing-folder",
        ["seed"],
        {"DATABASE_URL": "sqlite:///./no/such/folder/database.sqlite"},
        1,
        "error: cannot open the SQLite database {backend}/no/such/folder/"
        "database.sqlite: its folder does not exist or is not writable; fix "
        "DATABASE_URL in backend/.env or create the folder",
    ),
    (
        "database-url-nothing-listening",
        ["migrate"],
        {"DATABASE_URL": "postgresql+psycopg://shop:secret@127.0.0.1:9/shop"},
        1,
        'error: connection failed: connection to server at "127.0.0.1", port 9 '
        "failed: Connection refused (database postgresql+psycopg://shop:***@"
        "127.0.0.1:9/shop); check that the PostgreSQL server is running and that "
        "DATABASE_URL in backend/.env is right",
    ),
]


@pytest.fixture(scope="module")
def project(render, project_python):
    path = render({"project_slug": "bad-input"}, name="bad-input")
    link_venv(path, project_python)
    seeds = path / "backend" / "seeds"
    (seeds / "author.json").write_text('[{"name": "Ann"}]\n')
    (seeds / "book.json").write_text("[]\n")
    (path / "backend" / "models.json").write_text("[]\n")
    return path


def project_state(project) -> dict[str, str]:
    """Digest every file of the project, and the rows of every table."""
    state = {}
    for path in sorted(project.rglob("*")):
        if not path.is_file() or SKIPPED_PARTS & set(path.parts):
            continue
        if path.name.startswith("database.sqlite"):
            continue
        state[str(path.relative_to(project))] = hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
    with sqlite3.connect(project / "backend" / "database.sqlite") as connection:
        for (table,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ):
            rows = connection.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
            state[f"table {table}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return state


@pytest.mark.parametrize(
    ("args", "environment", "exit_status", "error"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_refused_and_changes_nothing(
    project, args, environment, exit_status, error
):
    backend = project / "backend"
    before = project_state(project)
    result = subprocess.run(
        [".venv/bin/python", "manage.py", *args],
        cwd=backend,
        env=clean_env(**environment),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == exit_status, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == error.format(backend=backend)
    assert project_state(project) == before
