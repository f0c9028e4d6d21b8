"""A model's transcript of action tags builds Chinook from nothing and loads it row for row."""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
import subprocess
from contextlib import closing
from decimal import Decimal
from pathlib import Path

from scripts.projects import clean_env, run_project_tests
from tests.conftest import link_venv
from tests.test_chinook import (
    ROW_COUNTS,
    TABLES,
    connect_chinook,
    declared_types,
    expected_rows,
)

TRANSCRIPT = Path(__file__).parent / "data" / "chinook_transcript.md"


def write_seed_files(seeds_dir: Path) -> None:
    """Write each Chinook table as backend/seeds/<Model>.json, in the API's value format."""
    for table, spec in TABLES.items():
        rows = list(expected_rows(table).values())
        (seeds_dir / f"{spec.model}.json").write_text(
            json.dumps(rows), encoding="utf-8"
        )


def stored_rows(database: Path, table: str) -> dict[tuple, dict[str, object]]:
    """Return a generated table's rows in the same format as expected_rows."""
    spec = TABLES[table]
    with closing(connect_chinook()) as chinook:
        types = declared_types(chinook, table)
    fields = list(spec.columns.values())
    table_name = re.sub(r"(?<!^)(?=[A-Z])", "_", spec.model).lower()
    with closing(sqlite3.connect(database)) as connection:
        raw_rows = connection.execute(
            f'SELECT {", ".join(fields)} FROM "{table_name}"'
        ).fetchall()
    rows = {}
    for raw_row in raw_rows:
        row = {}
        for (column, field), value in zip(spec.columns.items(), raw_row, strict=True):
            declared = types[column]
            if value is not None and declared == "DATETIME":
                value = datetime.datetime.fromisoformat(value).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
            elif value is not None and declared.startswith("NUMERIC"):
                value = str(Decimal(repr(value)).quantize(Decimal("0.01")))
            row[field] = value
        rows[tuple(row[name] for name in spec.key)] = row
    return rows


def test_transcript_builds_chinook(render, project_python):
    project = render({"models": []}, name="transcript", seed=False)
    link_venv(project, project_python)
    backend = project / "backend"
    write_seed_files(backend / "seeds")

    completed = subprocess.run(
        [".venv/bin/python", "manage.py", "--json", "apply", str(TRANSCRIPT)],
        cwd=backend,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(completed.stdout)
    failures = [action for action in result["actions"] if action["status"] != "ok"]
    assert failures == []
    assert completed.returncode == 0
    types = [action["type"] for action in result["actions"]]
    assert types.count("create_database_model") == 12
    assert types.count("create_crud_operations") == 11
    assert types.count("migrate_database") == 2
    assert types[-1] == "seed_database"
    assert sum(result["actions"][-1]["rows_seeded"].values()) == sum(
        ROW_COUNTS.values()
    )

    database = backend / "database.sqlite"
    for table in TABLES:
        expected = expected_rows(table)
        stored = stored_rows(database, table)
        assert len(stored) == ROW_COUNTS[table], table
        assert stored == expected, table

    again = subprocess.run(
        [".venv/bin/python", "manage.py", "--json", "seed"],
        cwd=backend,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert sum(json.loads(again.stdout)["rows_seeded"].values()) == 0

    check = subprocess.run(
        [".venv/bin/python", "manage.py", "check"],
        cwd=backend,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    tests = run_project_tests(".venv/bin/python", backend)
    assert tests.returncode == 0, tests.stdout[-3000:]
