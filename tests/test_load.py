"""64 concurrent clients mixing reads and writes for a minute: no 5xx, no lost update.

Each test renders a project with a Counter model, seeds HOT_ROWS counters,
and serves it with 2 uvicorn workers on 127.0.0.1, as a deployment would. The
clients of ``tests/load_workload.py`` then list, read, create and increment
counters until LOAD_SECONDS have passed. After the server has stopped, the
test reads the database directly. Each counter must equal its seeded value
plus the increments that returned 200 to the clients. The row count must
equal the seeded rows plus the creates that returned 201.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import link_venv, running_server
from tests.load_workload import (
    COUNTER_MODELS,
    COUNTERS_PATH,
    MIXED_WEIGHTS,
    LoadResult,
    differences,
    expected_counters,
    hot_rows_seed,
    project_database_url,
    read_postgres_counters,
    read_sqlite_counters,
    run_load,
)
from tests.test_tier_move import manage

pytestmark = pytest.mark.slow

LOAD_SECONDS = 60
CLIENTS = 64
WORKERS = 2
HOT_ROWS = 16
# Lines of the server log that start a Python traceback or name an exception.
SERVER_ERROR_LINE = re.compile(r"Traceback|Exception|Error")


def seeded_project(render, project_python, slug: str) -> Path:
    """Render a project with the Counter model and seed HOT_ROWS counters through manage.py."""
    project = render(
        {"models": COUNTER_MODELS, "project_slug": slug}, name=slug, seed=False
    )
    link_venv(project, project_python)
    backend = project / "backend"
    (backend / "seeds" / "Counter.json").write_text(
        json.dumps(hot_rows_seed(HOT_ROWS)), encoding="utf-8"
    )
    seeded = manage(backend, "seed")
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    return project


def server_errors_in_log(log_file: Path) -> str:
    lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [line for line in lines if SERVER_ERROR_LINE.search(line)]
    return "\n".join(errors[:40])


def serve_and_load(
    project_python: Path, backend: Path, log_file: Path, initial: dict
) -> tuple[LoadResult, int, dict[int, int]]:
    """Serve the project, run the load, then read the row count and hot values through the API.

    Returns the load's tally, the API's row total, and the value of each seeded row.
    """
    with running_server(
        project_python, backend, workers=WORKERS, log_file=log_file
    ) as base_url:
        result = run_load(
            base_url,
            sorted(initial),
            clients=CLIENTS,
            seconds=LOAD_SECONDS,
            weights=MIXED_WEIGHTS,
        )
        with httpx.Client(base_url=base_url, timeout=60, trust_env=False) as client:
            listed = client.get(COUNTERS_PATH, params={"limit": 1})
            assert listed.status_code == 200, listed.text
            hot_values = {}
            for row_id in initial:
                row = client.get(f"{COUNTERS_PATH}/{row_id}")
                assert row.status_code == 200, row.text
                hot_values[row_id] = row.json()["value"]
    # Shown by pytest when a check fails, and with -s.
    print(result.summary())
    return result, listed.json()["total"], hot_values


def check_load_result(result: LoadResult, log_file: Path) -> None:
    """Assert that every request got an expected response, with the server's errors on failure."""
    log = server_errors_in_log(log_file)
    assert result.client_failures == [], f"{result.summary()}\nserver log:\n{log}"
    assert result.unfinished_clients == 0, result.summary()
    assert result.server_errors == {}, f"{result.summary()}\nserver log:\n{log}"
    assert result.transport_errors == [], f"{result.summary()}\nserver log:\n{log}"
    assert result.unexpected_statuses == {}, result.summary()
    assert result.wrong_responses == []
    # The workload did what the checks below rely on: every kind of request,
    # and increments that raced each other.
    assert {kind for kind, _ in result.statuses} == {
        "list",
        "get",
        "create",
        "increment GET",
        "increment PATCH",
    }
    assert len(result.created) > 0, result.summary()
    assert result.successful_increments > 0, result.summary()
    assert result.retries > 0, result.summary()


def check_api_view(
    initial: dict, api_total: int, hot_values: dict, result: LoadResult
) -> None:
    expected = expected_counters(initial, result)
    assert api_total == len(initial) + len(result.created)
    assert hot_values == {row_id: expected[row_id][1] for row_id in initial}


def check_database(initial: dict, final: dict, result: LoadResult) -> None:
    expected = expected_counters(initial, result)
    assert len(final) == len(initial) + len(result.created)
    assert differences(expected, final) == [], result.summary()


def test_mixed_load_on_sqlite(render, project_python, tmp_path):
    project = seeded_project(render, project_python, "load-sqlite")
    backend = project / "backend"
    database = backend / "database.sqlite"
    initial = read_sqlite_counters(database)
    assert sorted(value for _, value in initial.values()) == [
        index * 100 for index in range(HOT_ROWS)
    ]
    log_file = tmp_path / "uvicorn.log"

    result, api_total, hot_values = serve_and_load(
        project_python, backend, log_file, initial
    )

    check_load_result(result, log_file)
    check_api_view(initial, api_total, hot_values, result)
    check_database(initial, read_sqlite_counters(database), result)


@pytest.fixture
def schema_tier_project(render, project_python, postgres_server):
    """A seeded project moved to tier 2 with manage.py upgrade, deprovisioned afterwards."""
    project = seeded_project(render, project_python, "load-schema")
    backend = project / "backend"
    moved = manage(
        backend,
        "upgrade",
        "--to",
        "postgres_schema",
        admin_url=postgres_server.admin_url,
    )
    assert moved.returncode == 0, moved.stdout + moved.stderr
    yield project
    removed = manage(
        backend, "deprovision", "--yes", admin_url=postgres_server.admin_url
    )
    assert removed.returncode == 0, removed.stdout + removed.stderr


@pytest.mark.postgres
def test_mixed_load_on_schema_tier(schema_tier_project, project_python, tmp_path):
    backend = schema_tier_project / "backend"
    url = project_database_url(backend)
    assert url.startswith("postgresql+psycopg://load_schema:")
    initial = read_postgres_counters(url)
    assert sorted(value for _, value in initial.values()) == [
        index * 100 for index in range(HOT_ROWS)
    ]
    log_file = tmp_path / "uvicorn.log"

    result, api_total, hot_values = serve_and_load(
        project_python, backend, log_file, initial
    )

    check_load_result(result, log_file)
    check_api_view(initial, api_total, hot_values, result)
    check_database(initial, read_postgres_counters(url), result)
