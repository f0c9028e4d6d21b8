"""Render the template across answer combinations and check each project as a user would."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import sys
from pathlib import Path

import pytest
import yaml

from scripts.projects import clean_env, run, run_project_tests

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

EVERY_TYPE_MODELS = [
    {
        "name": "Author",
        "fields": {"name": "string(100) required unique", "born_on": "date"},
    },
    {"name": "Tag", "fields": {"label": "string(40) required unique"}},
    {
        "name": "Book",
        "fields": {
            "title": "string(200) required unique",
            "summary": "text",
            "price": "decimal(10,2) default=0",
            "cost": "decimal(8,3) required",
            "published_on": "date",
            "status": "enum(draft,published) default=draft",
            "author": "ref(Author) required",
            "tags": "many(Tag)",
            "in_stock": "boolean default=true",
            "created_at": "datetime default=now",
            "meta": "json",
            "cover": "bytes",
            "code": "uuid unique",
            "pages": "integer default=1",
            "weight": "float",
            "isbn": "bigint index",
            "opens_at": "time",
        },
    },
    {
        "name": "Employee",
        "fields": ["full_name: string(50) required", "reports_to: ref(Employee)"],
    },
    {
        "name": "BookTag",
        "fields": {
            "book": "ref(Book) primary",
            "tag": "ref(Tag) primary",
            "note": "string(20)",
        },
    },
]

CHINOOK_MODELS = yaml.safe_load(
    (Path(__file__).parent / "data" / "chinook_models.yml").read_text(encoding="utf-8")
)
COMBINATIONS = {
    "defaults": {},
    "chinook": {"models": CHINOOK_MODELS, "project_name": "Chinook Store"},
    "no-models": {"models": []},
    "every-type": {"models": EVERY_TYPE_MODELS, "project_name": "Every Type"},
    "no-seed": {
        "seed_sample_data": False,
        "project_name": "Quiet Shop",
        "project_slug": "quiet_shop",
    },
}
# Jinja delimiters as templates write them: "{{ name", "{%" and "%}". The
# generator's own str.format templates escape braces without a space ("{{key").
JINJA_MARKER = re.compile(r"\{\{-? +[A-Za-z_]|\{%|%\}")


@pytest.fixture(scope="module", params=sorted(COMBINATIONS), ids=sorted(COMBINATIONS))
def combination(request, render):
    answers = COMBINATIONS[request.param]
    seed = answers.get("seed_sample_data", True)
    return render(answers, name=request.param, seed=seed), answers


def test_project_has_no_jinja_markers(combination):
    project, _ = combination
    leftovers = []
    for path in project.rglob("*"):
        if (
            ".venv" in path.parts
            or not path.is_file()
            or path.suffix in {".sqlite", ".pyc", ".png"}
            # SQLite's write-ahead log is binary, whatever a server left in it.
            or path.name.endswith(("-wal", "-shm"))
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.name == "alembic.ini":
            continue
        if JINJA_MARKER.search(text):
            leftovers.append(str(path.relative_to(project)))
    assert leftovers == []


def test_project_config_files_parse(combination):
    project, _ = combination
    tomllib.loads((project / "backend" / "pyproject.toml").read_text())
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["database_tier"] == "sqlite"
    config = json.loads((project / "db_config.json").read_text())
    assert config["tier"] == "sqlite"
    assert config["database_type"] == "sqlite"
    assert config["database_file"] == "backend/database.sqlite"
    assert re.fullmatch(r"[0-9a-f]{12}", config["revision"])
    assert "password" not in json.dumps(config).lower()


def test_project_passes_ruff(combination, project_python):
    project, _ = combination
    backend = project / "backend"
    ruff = project_python.parent / "ruff"
    check = run([str(ruff), "check", "."], cwd=backend)
    assert check.returncode == 0, check.stdout
    formatted = run([str(ruff), "format", "--check", "."], cwd=backend)
    assert formatted.returncode == 0, formatted.stdout


def test_project_tests_pass(combination, project_python):
    project, _ = combination
    result = run_project_tests(project_python, project / "backend")
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout


def test_alembic_check_is_clean(combination, project_python):
    project, _ = combination
    alembic = project_python.parent / "alembic"
    result = run([str(alembic), "check"], cwd=project / "backend", env=clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "No new upgrade operations detected." in result.stdout + result.stderr


def test_env_file_is_private_and_ignored(combination):
    project, _ = combination
    env_file = project / "backend" / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    lines = env_file.read_text().splitlines()
    assert lines[1:5] == [
        "DATABASE_URL=sqlite:///./database.sqlite",
        "DATABASE_TYPE=sqlite",
        "SQLALCHEMY_DATABASE_URL=sqlite:///./database.sqlite",
        "# The admin pages at /admin: user admin, this password.",
    ]
    assert re.fullmatch(r"ADMIN_PASSWORD=[A-Za-z0-9_-]{24}", lines[5])
    assert re.fullmatch(r"ADMIN_SECRET_KEY=[A-Za-z0-9_-]{43}", lines[6])
    assert len(lines) == 7
    assert "backend/.env" in (project / ".gitignore").read_text().splitlines()


def test_database_is_at_first_migration(combination):
    project, answers = combination
    database = project / "backend" / "database.sqlite"
    versions = list((project / "backend" / "migrations" / "versions").glob("*.py"))
    assert len(versions) == 1
    revision = re.search(
        r"^revision: str = \"(\w+)\"", versions[0].read_text(), re.M
    ).group(1)
    with sqlite3.connect(database) as connection:
        assert connection.execute(
            "select version_num from alembic_version"
        ).fetchall() == [(revision,)]
        assert connection.execute("pragma journal_mode").fetchone() == ("wal",)
        tables = {
            row[0]
            for row in connection.execute(
                "select name from sqlite_master where type='table'"
            )
        }
    model_count = len(answers.get("models", [1, 2]))
    assert len(tables - {"alembic_version"}) >= model_count
