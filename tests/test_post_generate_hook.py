"""The post-generation hook: real installs, a repeatable init, and failures that name their step."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest

from scripts.projects import clean_env, copier_copy, run

INIT_STEP = "Creating the database and applying the first migration"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def path_without_uv() -> str:
    uv = shutil.which("uv")
    directories = os.environ["PATH"].split(os.pathsep)
    if uv is None:
        return os.environ["PATH"]
    return os.pathsep.join(
        d for d in directories if Path(d).resolve() != Path(uv).resolve().parent
    )


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_copy_installs_and_migrates(installer, template_source, tmp_path):
    if installer == "uv" and shutil.which("uv") is None:
        pytest.fail(
            "uv is not on PATH; scripts/test installs it with the test requirements"
        )
    destination = tmp_path / "app"
    env = clean_env() if installer == "uv" else clean_env(PATH=path_without_uv())
    result = copier_copy(
        template_source, destination, {"project_name": "Shop"}, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected_step = (
        "Installing dependencies with uv"
        if installer == "uv"
        else "Installing dependencies with pip"
    )
    assert expected_step in result.stderr
    backend = destination / "backend"
    python = backend / ".venv" / "bin" / "python"
    assert python.exists()

    config = json.loads((destination / "db_config.json").read_text())
    assert config["template_version"] == "v0.0.1"
    with sqlite3.connect(backend / "database.sqlite") as connection:
        revision = connection.execute(
            "select version_num from alembic_version"
        ).fetchone()[0]
        assert connection.execute("select count(*) from author").fetchone() == (5,)
    assert config["revision"] == revision

    before = digest(backend / "database.sqlite")
    again = run([str(python), "manage.py", "init"], cwd=backend, env=clean_env())
    assert again.returncode == 0
    assert (
        again.stdout.strip()
        == f"Database already set up at revision {revision}; nothing to do"
    )
    assert digest(backend / "database.sqlite") == before


def test_init_failure_names_step_and_removes_project(template_source, tmp_path):
    destination = tmp_path / "app"
    # A database in a folder that does not exist cannot be created.
    env_answers = {"project_name": "Broken"}
    result = copier_copy(
        template_source,
        destination,
        env_answers,
        env=clean_env(DATABASE_URL="sqlite:////nonexistent-folder/db.sqlite"),
    )
    assert result.returncode == 1
    assert f"error: {INIT_STEP} failed: " in result.stderr
    assert (
        "cannot open the SQLite database /nonexistent-folder/db.sqlite: its folder "
        "does not exist or is not writable; fix DATABASE_URL in backend/.env or "
        "create the folder" in result.stderr
    )
    assert (
        "To run this step again: cd backend && .venv/bin/python manage.py init --seed-sample"
        in result.stderr
    )
    assert not destination.exists()


def test_failed_init_leaves_no_database(render, project_python, tmp_path):
    project = render({"models": []}, name="failing", seed=False)
    backend = project / "backend"
    (backend / "database.sqlite").unlink()
    for path in (backend / "migrations" / "versions").glob("*.py"):
        path.unlink()
    # A server default that SQLite cannot parse makes the first migration fail.
    with (backend / "models.py").open("a") as models:
        models.write(
            "\n\nclass Broken(Base):\n"
            '    __tablename__ = "broken"\n\n'
            "    id: Mapped[int] = mapped_column(primary_key=True)\n"
            '    note: Mapped[str] = mapped_column(sa.String(5), server_default=sa.text("nonsense("))\n'
        )
    (backend / "models.py").write_text(
        (backend / "models.py")
        .read_text()
        .replace(
            "from sqlalchemy.orm import DeclarativeBase\n",
            "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column\n",
        )
    )
    result = run(
        [str(project_python), "manage.py", "init"], cwd=backend, env=clean_env()
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert not (backend / "database.sqlite").exists()
    assert list((backend / "migrations" / "versions").glob("*.py")) == []


def test_every_directory_opens_same_database(render, project_python, server, tmp_path):
    project = render({}, name="anywhere")
    backend = project / "backend"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    database = backend / "database.sqlite"

    with server(project_python, backend, cwd=project) as base_url:
        created = httpx.post(f"{base_url}/authors", json={"name": "Written From Root"})
        assert created.status_code == 201, created.text
    with server(project_python, backend, cwd=elsewhere) as base_url:
        names = [
            row["name"]
            for row in httpx.get(f"{base_url}/authors", params={"limit": 100}).json()[
                "items"
            ]
        ]
        assert "Written From Root" in names

    manage = backend / "manage.py"
    for cwd in (project, backend, elsewhere):
        result = run(
            [str(project_python), str(manage), "check"], cwd=cwd, env=clean_env()
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "Models and database match"
        alembic = run(
            [
                str(project_python.parent / "alembic"),
                "-c",
                str(backend / "alembic.ini"),
                "current",
            ],
            cwd=cwd,
            env=clean_env(),
        )
        assert alembic.returncode == 0, alembic.stderr
        assert (
            json.loads((project / "db_config.json").read_text())["revision"]
            in alembic.stdout
        )

    with sqlite3.connect(database) as connection:
        assert connection.execute(
            "select count(*) from author where name = 'Written From Root'"
        ).fetchone() == (1,)
    assert not (project / "database.sqlite").exists()
    assert not (elsewhere / "database.sqlite").exists()
