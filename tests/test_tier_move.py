"""Moving a live SQLite project with Chinook's data to PostgreSQL loses nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import httpx
import psycopg
import pytest
import yaml

from scripts.projects import clean_env
from tests.conftest import link_venv
from tests.test_chinook import MODELS_FILE, ROW_COUNTS
from tests.test_chinook_transcript import write_seed_files

pytestmark = pytest.mark.postgres

# Responses compared before and after the move.
PROBES = [
    "/artists?limit=1000",
    "/albums?limit=50&sort=-title",
    "/tracks?limit=200&name=love",
    "/invoices/1",
    "/invoice-lines?limit=100&sort=-unit_price",
    "/employees?limit=20",
    "/customers?country=brazil",
    "/playlist-tracks/1/1",
    "/genres?limit=30",
]


def manage(backend, *args, admin_url=None):
    extra = {"ADMIN_DATABASE_URL": admin_url} if admin_url else {}
    return subprocess.run(
        [".venv/bin/python", "manage.py", *args],
        cwd=backend,
        env=clean_env(**extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


def snapshot(base_url: str) -> dict[str, object]:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        return {probe: client.get(probe).json() for probe in PROBES}


def test_chinook_moves_to_schema_tier(render, project_python, server, postgres_server):
    models = yaml.safe_load(MODELS_FILE.read_text(encoding="utf-8"))
    project = render(
        {"models": models, "project_slug": "chinook-move"},
        name="chinook-move",
        seed=False,
    )
    link_venv(project, project_python)
    backend = project / "backend"
    write_seed_files(backend / "seeds")
    seeded = manage(backend, "seed")
    assert seeded.returncode == 0, seeded.stderr

    with server(project_python, backend) as base_url:
        before = snapshot(base_url)

    moved = manage(
        backend,
        "--json",
        "upgrade",
        "--to",
        "postgres_schema",
        admin_url=postgres_server.admin_url,
    )
    assert moved.returncode == 0, moved.stdout + moved.stderr
    result = json.loads(moved.stdout)
    assert result["rows"] == {
        table: count
        for table, count in (
            ("artist", ROW_COUNTS["Artist"]),
            ("genre", ROW_COUNTS["Genre"]),
            ("media_type", ROW_COUNTS["MediaType"]),
            ("playlist", ROW_COUNTS["Playlist"]),
            ("employee", ROW_COUNTS["Employee"]),
            ("album", ROW_COUNTS["Album"]),
            ("customer", ROW_COUNTS["Customer"]),
            ("invoice", ROW_COUNTS["Invoice"]),
            ("track", ROW_COUNTS["Track"]),
            ("invoice_line", ROW_COUNTS["InvoiceLine"]),
            ("playlist_track", ROW_COUNTS["PlaylistTrack"]),
        )
    }
    env_lines = (backend / ".env").read_text().splitlines()
    assert env_lines[2] == "DATABASE_TYPE=postgresql"
    assert not (backend / "database.sqlite").exists()
    config = json.loads((project / "db_config.json").read_text())
    assert config["tier"] == "postgres_schema"
    assert config["tier_history"][-1]["from"] == "sqlite"
    assert config["tier_history"][-1]["rows"] == sum(ROW_COUNTS.values())
    backup = project / config["tier_history"][-1]["backup"]
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as old:
        assert old.execute("SELECT count(*) FROM track").fetchone() == (
            ROW_COUNTS["Track"],
        )

    with server(project_python, backend) as base_url:
        after = snapshot(base_url)
        created = httpx.post(f"{base_url}/artists", json={"name": "After The Move"})
    for probe in PROBES:
        assert after[probe] == before[probe], probe
    assert created.status_code == 201, created.text
    assert created.json()["id"] == ROW_COUNTS["Artist"] + 1

    check = manage(backend, "check")
    assert check.returncode == 0, check.stderr
    manage(backend, "deprovision", "--yes", admin_url=postgres_server.admin_url)


def test_preflight_stops_before_provisioning(render, project_python, postgres_server):
    project = render({"project_slug": "too-long"}, name="too-long")
    link_venv(project, project_python)
    backend = project / "backend"
    with sqlite3.connect(backend / "database.sqlite") as connection:
        connection.execute("UPDATE author SET name = ? WHERE id = 2", ("x" * 150,))
    env_before = (backend / ".env").read_bytes()
    moved = manage(
        backend,
        "upgrade",
        "--to",
        "postgres_database",
        admin_url=postgres_server.admin_url,
    )
    assert moved.returncode == 1
    assert moved.stderr.strip() == (
        "error: the data cannot move to PostgreSQL: table author, id=2, column name: "
        "longer than 100 characters; fix these rows and run the upgrade again "
        "(nothing was created or changed)"
    )
    assert (backend / ".env").read_bytes() == env_before
    assert (backend / "database.sqlite").exists()
    with psycopg.connect(
        postgres_server.admin_url.replace("postgresql+psycopg://", "postgresql://")
    ) as admin:
        assert (
            admin.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = 'too_long'"
            ).fetchone()
            is None
        )
