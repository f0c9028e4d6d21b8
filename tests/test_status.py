"""manage.py status: tier, size, rows, revision, and when to move up a tier."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time

import pytest

from scripts.projects import clean_env
from tests.conftest import link_venv

# Upper bound on the background writers in these tests, in seconds.
MAX_LOAD_SECONDS = 10


@pytest.fixture(scope="module")
def project(render, project_python):
    path = render({"project_slug": "status-check"}, name="status-check")
    link_venv(path, project_python)
    return path


def status(backend, *args):
    return subprocess.run(
        [".venv/bin/python", "manage.py", "status", *args],
        cwd=backend,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_counts(database) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("author", "book")
        }


def test_quiet_sqlite_project_fits_its_tier(project):
    backend = project / "backend"
    result = status(backend, "--json", "--sample", "0.5")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tier"] == "sqlite"
    assert report["database"] == f"sqlite file {backend / 'database.sqlite'}"
    assert report["rows"] == table_counts(backend / "database.sqlite")
    assert report["revision"] == report["head"]
    assert report["at_head"] is True
    assert report["size_bytes"] >= (backend / "database.sqlite").stat().st_size
    assert report["measurements"]["commits_per_second"] == 0.0
    assert report["recommendation"] is None

    text = status(backend, "--sample", "0")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"Tier: sqlite (sqlite file {backend / 'database.sqlite'})"
    assert lines[2] == f"Revision: {report['revision']} (at head)"
    counts = table_counts(backend / "database.sqlite")
    assert lines[3] == f"Rows: author {counts['author']}, book {counts['book']}"
    assert lines[-1] == "Advice: the project fits its tier"


def test_busy_writers_get_advice_to_move_up(project):
    backend = project / "backend"
    stop = threading.Event()
    committed = []

    def write_until_stopped():
        connection = sqlite3.connect(backend / "database.sqlite", timeout=30)
        deadline = time.monotonic() + MAX_LOAD_SECONDS
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                with connection:
                    connection.execute(
                        "UPDATE author SET name = name WHERE id = (SELECT min(id) FROM author)"
                    )
                committed.append(1)
                time.sleep(0.002)
        finally:
            connection.close()

    writer = threading.Thread(target=write_until_stopped)
    writer.start()
    try:
        result = status(backend, "--json", "--sample", "1")
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["measurements"]["commits_per_second"] > 50, report
    advice = report["recommendation"]
    assert advice["tier"] == "postgres_schema"
    assert advice["command"] == "python manage.py upgrade --to postgres_schema"
    assert advice["reasons"][0].startswith("other connections committed ")
    assert advice["reasons"][0].endswith(
        " times a second, more than 50; SQLite lets one writer in at a time"
    )


def test_held_write_lock_gets_advice_to_move_up(project):
    backend = project / "backend"
    holder = sqlite3.connect(
        backend / "database.sqlite", isolation_level=None, check_same_thread=False
    )
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(2.0, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        result = status(backend, "--sample", "0.5")
    finally:
        release.join()
        holder.close()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2].startswith("Advice: move up to postgres_schema, because ")
    assert "ms for the write lock, more than 200 ms" in lines[-2]
    assert lines[-1] == "Run: python manage.py upgrade --to postgres_schema"


@pytest.mark.parametrize("value", ["soon", "-1", "61", "nan"])
def test_bad_sample_is_a_usage_error(project, value):
    result = status(project / "backend", "--sample", value)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"manage.py status: error: argument --sample: {value!r} is not a number "
        "of seconds from 0 to 60, for example 2"
    )
