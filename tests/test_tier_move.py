"""Moving a live SQLite project with Chinook's data to PostgreSQL loses nothing."""

from __future__ import annotations

import json
import os
import pty
import re
import sqlite3
import subprocess
import threading

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


def manage_on_terminal(backend, *args, admin_url):
    """Run manage.py with stderr on a pseudo-terminal; return the result and what it drew."""
    leader, follower = pty.openpty()
    drawn = []

    def drain():
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        completed = subprocess.run(
            [".venv/bin/python", "manage.py", *args],
            cwd=backend,
            env=clean_env(ADMIN_DATABASE_URL=admin_url, TERM="xterm", COLUMNS="120"),
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=600,
        )
    finally:
        os.close(follower)
        reader.join(timeout=30)
        os.close(leader)
    text = b"".join(drawn).decode(errors="replace")
    return completed, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


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
        moved, terminal = manage_on_terminal(
            backend,
            "--json",
            "upgrade",
            "--to",
            "postgres_schema",
            admin_url=postgres_server.admin_url,
        )
        # The app has not restarted: its writes must fail, not vanish.
        stale = httpx.post(f"{base_url}/artists", json={"name": "Too Late"})
    assert stale.status_code == 409, stale.text
    assert stale.json() == {"detail": f"conflict: {moved_message('postgres_schema')}"}
    assert moved.returncode == 0, moved.stdout + terminal
    # The progress bar goes to stderr, a terminal here; stdout stays JSON.
    total = sum(ROW_COUNTS.values())
    assert "Copying to postgres_schema" in terminal
    assert f"{total}/{total} rows" in terminal
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

    # Tier 2 to tier 3: the same role moves into a database of its own.
    with server(project_python, backend) as base_url:
        before = snapshot(base_url)
        moved = manage(
            backend,
            "--json",
            "upgrade",
            "--to",
            "postgres_database",
            admin_url=postgres_server.admin_url,
        )
        stale = httpx.post(f"{base_url}/artists", json={"name": "Too Late"})
    # The old schema is gone by now, or refuses the write if it is not.
    assert stale.status_code in (409, 500), stale.text
    assert moved.returncode == 0, moved.stdout + moved.stderr
    result = json.loads(moved.stdout)
    assert result["source_tier"] == "postgres_schema"
    assert result["warnings"] == []
    assert sum(result["rows"].values()) == sum(ROW_COUNTS.values()) + 1
    config = json.loads((project / "db_config.json").read_text())
    assert config["tier"] == "postgres_database"
    assert config["database"] == "chinook_move"
    assert [(move["from"], move["to"]) for move in config["tier_history"]] == [
        ("sqlite", "postgres_schema"),
        ("postgres_schema", "postgres_database"),
    ]
    dump = project / config["tier_history"][-1]["backup"]
    assert dump.name.startswith("chinook_move-")
    assert dump.name.endswith("-before-postgres_database.sql")
    assert dump.stat().st_mode & 0o777 == 0o444

    with server(project_python, backend) as base_url:
        after = snapshot(base_url)
        created = httpx.post(
            f"{base_url}/artists", json={"name": "In Its Own Database"}
        )
    for probe in PROBES:
        assert after[probe] == before[probe], probe
    assert created.status_code == 201, created.text
    assert created.json()["id"] == ROW_COUNTS["Artist"] + 2

    admin_url = libpq(postgres_server.admin_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        assert admin.execute(
            "SELECT has_database_privilege('chinook_move', 'aicoder_projects', 'CONNECT')"
        ).fetchone() == (False,)
    with psycopg.connect(on_database(admin_url, "aicoder_projects")) as shared:
        assert (
            shared.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = 'chinook_move'"
            ).fetchone()
            is None
        )
    # The project README's restore commands, word for word, on the dump of the
    # tier 2 schema.
    restored_url = on_database(admin_url, "restored")
    restore = subprocess.run(
        [
            "bash",
            "-c",
            'createdb --maintenance-db="$ADMIN_DATABASE_URL" restored && '
            'psql "${ADMIN_DATABASE_URL%/*}/restored" -v ON_ERROR_STOP=1 -q -f "$DUMP"',
        ],
        env=clean_env(ADMIN_DATABASE_URL=admin_url, DUMP=str(dump)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restore.returncode == 0, restore.stderr
    with psycopg.connect(restored_url) as restored:
        assert restored.execute(
            "SELECT count(*) FROM chinook_move.artist"
        ).fetchone() == (ROW_COUNTS["Artist"] + 1,)
        assert restored.execute(
            "SELECT count(*) FROM chinook_move.track"
        ).fetchone() == (ROW_COUNTS["Track"],)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE restored")

    check = manage(backend, "check")
    assert check.returncode == 0, check.stderr
    manage(backend, "deprovision", "--yes", admin_url=postgres_server.admin_url)


def moved_message(tier: str) -> str:
    return f"this project moved to {tier}; restart the app so that it connects there"


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def on_database(url: str, database: str) -> str:
    return f"{url.rsplit('/', 1)[0]}/{database}"


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


def test_blocked_schema_move_changes_nothing_then_succeeds(
    render, project_python, postgres_server
):
    project = render({"project_slug": "held-lock"}, name="held-lock")
    link_venv(project, project_python)
    backend = project / "backend"
    admin = postgres_server.admin_url
    # The first move comes from an agent's action tag.
    (backend / "move.txt").write_text(
        '<action type="upgrade_database" tier="postgres_schema" />\n'
    )
    first = manage(backend, "--json", "apply", "move.txt", admin_url=admin)
    assert first.returncode == 0, first.stdout + first.stderr
    (action,) = json.loads(first.stdout)["actions"]
    assert action["type"] == "upgrade_database"
    assert action["source_tier"] == "sqlite"
    assert action["target_tier"] == "postgres_schema"
    rows = action["rows"]
    assert set(rows) == {"author", "book"}
    env_before = (backend / ".env").read_bytes()
    config_before = (project / "db_config.json").read_bytes()
    project_url = libpq((backend / ".env").read_text().splitlines()[1].split("=", 1)[1])

    # 16 of the role's 20 connections in use: status advises tier 3.
    crowd = [psycopg.connect(project_url) for _ in range(16)]
    try:
        crowded = manage(backend, "--json", "status", "--sample", "0")
    finally:
        for connection in crowd:
            connection.close()
    assert crowded.returncode == 0, crowded.stderr
    report = json.loads(crowded.stdout)
    assert report["tier"] == "postgres_schema"
    assert report["rows"] == rows
    assert type(report["size_bytes"]) is int
    assert report["size_bytes"] > 0
    assert report["at_head"] is True
    assert report["measurements"]["connection_limit"] == 20
    busiest = report["measurements"]["busiest_connections"]
    assert 17 <= busiest <= 20
    assert report["recommendation"] == {
        "tier": "postgres_database",
        "reasons": [
            f"the role had {busiest} of its 20 connections open; "
            "a database of its own can have more"
        ],
        "command": "python manage.py upgrade --to postgres_database",
    }

    # An open write transaction holds a row lock, so the move cannot block
    # writes and gives up after the role's lock_timeout.
    with psycopg.connect(project_url) as writer:
        writer.execute("UPDATE author SET name = 'Held' WHERE id = 1")
        blocked = manage(
            backend, "upgrade", "--to", "postgres_database", admin_url=admin
        )
    assert blocked.returncode == 1
    assert blocked.stderr.strip() == (
        "error: another transaction kept writing to the project's tables for longer "
        "than the role's lock_timeout, so the copy could not start; nothing was "
        "changed. Run the upgrade again when it has ended, or stop the app first"
    )
    assert (backend / ".env").read_bytes() == env_before
    assert (project / "db_config.json").read_bytes() == config_before
    assert list((backend / "backups").glob("*.sql")) == []
    with psycopg.connect(libpq(admin), autocommit=True) as connection:
        assert (
            connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = 'held_lock'"
            ).fetchone()
            is None
        )
    with psycopg.connect(project_url) as reader:
        assert reader.execute("SELECT count(*) FROM author").fetchone() == (
            rows["author"],
        )
        # The writer committed once the move had given up.
        assert reader.execute("SELECT name FROM author WHERE id = 1").fetchone() == (
            "Held",
        )

    moved = manage(
        backend, "--json", "upgrade", "--to", "postgres_database", admin_url=admin
    )
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert json.loads(moved.stdout)["rows"] == rows
    settled = manage(backend, "--json", "status", "--sample", "0")
    assert settled.returncode == 0, settled.stderr
    report = json.loads(settled.stdout)
    assert report["tier"] == "postgres_database"
    assert report["rows"] == rows
    assert report["size_bytes"] > 0
    assert report["recommendation"] is None

    again = manage(backend, "upgrade", "--to", "postgres_database", admin_url=admin)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        "error: the project is already on postgres_database; nothing to move"
    )
    down = manage(backend, "upgrade", "--to", "postgres_schema", admin_url=admin)
    assert down.returncode == 2
    assert down.stderr.strip() == (
        "error: the project is on postgres_database and cannot move down to "
        "postgres_schema; a project only moves up: sqlite, postgres_schema, "
        "postgres_database"
    )
    manage(backend, "deprovision", "--yes", admin_url=admin)


def test_reserved_role_name_is_refused_before_anything(
    render, project_python, postgres_server
):
    project = render({"project_slug": "pg-tools"}, name="pg-tools")
    link_venv(project, project_python)
    backend = project / "backend"
    config_before = (project / "db_config.json").read_bytes()
    refused = manage(
        backend,
        "upgrade",
        "--to",
        "postgres_schema",
        admin_url=postgres_server.admin_url,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: project name 'pg-tools' gives the PostgreSQL name 'pg_tools', and "
        "PostgreSQL reserves role names that start with pg_; use a project slug that "
        "does not start with pg- or pg_"
    )
    assert (project / "db_config.json").read_bytes() == config_before
    assert (backend / "database.sqlite").exists()
