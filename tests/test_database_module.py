"""database.py in a rendered project: configuration errors, in-memory URLs, SQLite settings, types."""

from __future__ import annotations

import json

import pytest

from scripts.projects import clean_env, run

TYPED_MODELS = [
    {
        "name": "Reading",
        "fields": {
            "taken_at": "datetime required",
            "amount": "decimal(10,2) required",
            "ok": "boolean required",
        },
    }
]


@pytest.fixture(scope="module")
def typed_project(render):
    return render({"models": TYPED_MODELS}, name="typed", seed=False)


def python_result(project_python, backend, code: str, **env: str):
    return run([str(project_python), "-c", code], cwd=backend, env=clean_env(**env))


def test_missing_url_names_env_file(typed_project, project_python):
    backend = typed_project / "backend"
    env_file = backend / ".env"
    saved = env_file.read_text()
    env_file.write_text("DATABASE_TYPE=sqlite\n")
    try:
        result = python_result(project_python, backend, "import database")
    finally:
        env_file.write_text(saved)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (
        f"database.DatabaseConfigError: DATABASE_URL is not set; add "
        f"DATABASE_URL=sqlite:///./database.sqlite to {env_file} or export it"
    )


def test_malformed_url_is_rejected(typed_project, project_python):
    result = python_result(
        project_python,
        typed_project / "backend",
        "import database",
        DATABASE_URL="not a url",
    )
    assert result.returncode == 1
    assert "DATABASE_URL in" in result.stderr
    assert (
        "is not a database URL; expected sqlite:///./database.sqlite" in result.stderr
    )


def test_sqlite_connection_settings(typed_project, project_python):
    code = (
        "import json\n"
        "from database import engine\n"
        "with engine.connect() as c:\n"
        "    values = {p: c.exec_driver_sql(f'PRAGMA {p}').scalar() for p in "
        "('journal_mode', 'synchronous', 'foreign_keys', 'busy_timeout')}\n"
        "print(json.dumps(values))\n"
    )
    result = python_result(project_python, typed_project / "backend", code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 30000,
    }


def test_in_memory_url_shares_one_database(typed_project, project_python):
    code = (
        "from database import SessionLocal, engine\n"
        "from sqlalchemy import text\n"
        "with SessionLocal() as a:\n"
        "    a.execute(text('create table t (x integer)'))\n"
        "    a.execute(text('insert into t values (7)'))\n"
        "    a.commit()\n"
        "with SessionLocal() as b:\n"
        "    print(b.execute(text('select x from t')).scalar(), type(engine.pool).__name__)\n"
    )
    result = python_result(
        project_python,
        typed_project / "backend",
        code,
        DATABASE_URL="sqlite:///:memory:",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "StaticPool"]


def test_values_round_trip_typed(typed_project, project_python):
    code = (
        "import datetime, decimal\n"
        "from database import SessionLocal\n"
        "from models import Reading\n"
        "with SessionLocal() as db:\n"
        "    local = datetime.timezone(datetime.timedelta(hours=2))\n"
        "    db.add(Reading(taken_at=datetime.datetime(2024, 5, 1, 12, 0, tzinfo=local),"
        " amount=decimal.Decimal('12.5'), ok=False))\n"
        "    db.commit()\n"
        "with SessionLocal() as db:\n"
        "    row = db.query(Reading).one()\n"
        "    print(repr(row.taken_at), repr(row.amount), repr(row.ok))\n"
    )
    result = python_result(project_python, typed_project / "backend", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.timezone.utc) Decimal('12.50') False"
    )
