"""PostgreSQL tiers on a real server: provisioning, isolation, and the same code on every tier."""

from __future__ import annotations

import filecmp
import json
import re
import subprocess
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from scripts.projects import clean_env, copier_copy, run_project_tests
from tests.conftest import link_venv
from tests.test_generation import EVERY_TYPE_MODELS

pytestmark = pytest.mark.postgres

# Files that differ between tiers by design, or are data rather than code.
TIER_SPECIFIC = {"backend/.env", "db_config.json", ".copier-answers.yml"}
NOT_CODE = {".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "backups"}


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def project_url(project: Path) -> str:
    for line in (project / "backend" / ".env").read_text().splitlines():
        if line.startswith("DATABASE_URL="):
            return line.split("=", 1)[1]
    raise AssertionError("backend/.env has no DATABASE_URL")


def manage(
    project: Path, *args: str, admin_url: str | None = None, env: dict | None = None
):
    extra = {"ADMIN_DATABASE_URL": admin_url} if admin_url else {}
    return subprocess.run(
        [".venv/bin/python", "manage.py", *args],
        cwd=project / "backend",
        env=clean_env(**extra, **(env or {})),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def make_project(template_source, project_python, postgres_server, tmp_path_factory):
    """Return a function that renders a project on a tier, provisions and migrates it."""
    created = []

    def make(
        slug: str,
        tier: str,
        models=None,
        *,
        init: bool = True,
        provision: bool = True,
        name: str | None = None,
    ) -> Path:
        destination = tmp_path_factory.mktemp(slug) / slug
        answers = {
            "project_slug": slug,
            "database_tier": tier,
            "install_dependencies": False,
            "seed_sample_data": True,
            "models": EVERY_TYPE_MODELS if models is None else models,
        }
        result = copier_copy(template_source, destination, answers)
        assert result.returncode == 0, result.stderr[-3000:]
        link_venv(destination, project_python)
        if name is not None:
            # Provision under a name the Copier answer cannot hold, such as MixedCase.
            config_file = destination / "db_config.json"
            config_file.write_text(
                json.dumps({**json.loads(config_file.read_text()), "project": name})
            )
        if tier != "sqlite" and provision:
            provisioned = manage(
                destination, "provision", admin_url=postgres_server.admin_url
            )
            assert provisioned.returncode == 0, provisioned.stderr
            created.append(destination)
        if init:
            initialized = manage(destination, "init", "--seed-sample")
            assert initialized.returncode == 0, initialized.stderr
        return destination

    yield make
    for project in created:
        manage(project, "deprovision", "--yes", admin_url=postgres_server.admin_url)


def test_schema_tier_provisions_role_and_schema(make_project, postgres_server):
    project = make_project("shop-one", "postgres_schema")
    config = json.loads((project / "db_config.json").read_text())
    assert config["tier"] == "postgres_schema"
    assert config["provisioning"]["role"] == "shop_one"
    assert config["provisioning"]["schema"] == "shop_one"
    assert config["provisioning"]["database"] == "aicoder_projects"
    assert "password" not in json.dumps(config).lower()
    url = make_url(project_url(project))
    assert url.username == "shop_one"
    assert url.password not in json.dumps(config)

    with psycopg.connect(
        libpq_url(postgres_server.admin_url), autocommit=True
    ) as admin:
        role = admin.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolconnlimit, rolconfig FROM pg_roles WHERE rolname = 'shop_one'"
        ).fetchone()
    assert role[:4] == (False, False, False, 20)
    assert sorted(role[4]) == [
        "TimeZone=UTC",
        "idle_in_transaction_session_timeout=60s",
        "lock_timeout=10s",
        "statement_timeout=30s",
    ]
    with psycopg.connect(
        libpq_url(project_url(project)), autocommit=True
    ) as connection:
        tables = connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 2"
        ).fetchall()
        assert ("shop_one", "alembic_version") in tables
        assert {schema for schema, _ in tables} == {"shop_one"}
        assert connection.execute("SHOW search_path").fetchone() == ("shop_one",)


def test_provisioning_twice_changes_nothing(make_project, postgres_server):
    project = make_project("shop-two", "postgres_schema")
    env_before = (project / "backend" / ".env").read_bytes()
    again = manage(project, "provision", admin_url=postgres_server.admin_url)
    assert again.returncode == 0, again.stderr
    assert (
        again.stdout.strip()
        == "Already provisioned: role shop_two, database aicoder_projects; nothing to do"
    )
    assert (project / "backend" / ".env").read_bytes() == env_before


@pytest.mark.parametrize(
    "slug",
    ["my-app", "select", "MyApp", "a" * 40],
    ids=["dash", "keyword", "mixed-case", "forty"],
)
def test_unusual_slugs_provision(
    slug, make_project, postgres_server, template_source, project_python, tmp_path
):
    name = slug.lower().replace("-", "_")
    render_slug = "myapp" if slug == "MyApp" else slug
    project = make_project(
        render_slug, "postgres_database", models=[], init=False, name=slug
    )
    initialized = manage(project, "init")
    assert initialized.returncode == 0, initialized.stderr
    url = make_url(project_url(project))
    assert url.username == name
    assert url.database == name
    with psycopg.connect(
        libpq_url(project_url(project)), autocommit=True
    ) as connection:
        assert connection.execute("SELECT current_schema()").fetchone() == (name,)


def test_taken_name_is_an_error_and_changes_nothing(
    make_project, postgres_server, template_source, project_python, tmp_path
):
    make_project("taken", "postgres_schema", models=[])
    destination = tmp_path / "taken"
    result = copier_copy(
        template_source,
        destination,
        {
            "project_slug": "taken",
            "database_tier": "postgres_schema",
            "install_dependencies": False,
        },
    )
    assert result.returncode == 0
    link_venv(destination, project_python)
    with psycopg.connect(
        libpq_url(postgres_server.admin_url), autocommit=True
    ) as admin:
        roles_before = admin.execute(
            "SELECT rolname FROM pg_roles ORDER BY 1"
        ).fetchall()
    env_before = (destination / "backend" / ".env").read_bytes()
    second = manage(destination, "provision", admin_url=postgres_server.admin_url)
    assert second.returncode == 1
    assert second.stderr.strip() == (
        "error: a PostgreSQL role named 'taken' already exists; nothing was changed. "
        "Choose another project slug, or remove the old project with manage.py deprovision"
    )
    assert (destination / "backend" / ".env").read_bytes() == env_before
    with psycopg.connect(
        libpq_url(postgres_server.admin_url), autocommit=True
    ) as admin:
        assert (
            admin.execute("SELECT rolname FROM pg_roles ORDER BY 1").fetchall()
            == roles_before
        )


def test_failed_provisioning_removes_what_it_created(
    template_source, project_python, postgres_server, tmp_path
):
    destination = tmp_path / "halfway"
    copier_copy(
        template_source,
        destination,
        {
            "project_slug": "halfway",
            "database_tier": "postgres_schema",
            "install_dependencies": False,
        },
    )
    link_venv(destination, project_python)
    # template0 accepts no connections, so creating the schema fails after the role exists.
    result = manage(
        destination,
        "provision",
        admin_url=postgres_server.admin_url,
        env={"SHARED_DATABASE_NAME": "template0"},
    )
    assert result.returncode == 1
    assert (
        "cannot connect to the PostgreSQL server in ADMIN_DATABASE_URL" in result.stderr
    )
    assert "adminpw" not in result.stderr
    with psycopg.connect(
        libpq_url(postgres_server.admin_url), autocommit=True
    ) as admin:
        assert (
            admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'halfway'").fetchone()
            is None
        )
    assert "sqlite" in (destination / "backend" / ".env").read_text()


def test_deprovision_needs_yes_then_removes_all(make_project, postgres_server):
    project = make_project("gone", "postgres_database", models=[])
    rejected = manage(project, "deprovision", admin_url=postgres_server.admin_url)
    assert rejected.returncode == 2
    assert (
        rejected.stderr.strip()
        == "error: deprovision deletes role gone and every row of the project in database gone; pass --yes to confirm"
    )
    with psycopg.connect(libpq_url(project_url(project)), autocommit=True) as session:
        removed = manage(
            project, "deprovision", "--yes", admin_url=postgres_server.admin_url
        )
        assert removed.returncode == 0, removed.stderr
    with psycopg.connect(
        libpq_url(postgres_server.admin_url), autocommit=True
    ) as admin:
        assert (
            admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'gone'").fetchone()
            is None
        )
        assert (
            admin.execute("SELECT 1 FROM pg_database WHERE datname = 'gone'").fetchone()
            is None
        )
    assert session.closed or session.broken


def test_two_projects_are_isolated(make_project, postgres_server):
    first = make_project(
        "iso-a",
        "postgres_schema",
        models=[{"name": "Note", "fields": {"body": "text"}}],
    )
    second = make_project(
        "iso-b",
        "postgres_schema",
        models=[{"name": "Secret", "fields": {"value": "text"}}],
    )
    third = make_project(
        "iso-c",
        "postgres_database",
        models=[{"name": "Memo", "fields": {"body": "text"}}],
    )
    with psycopg.connect(libpq_url(project_url(first)), autocommit=True) as connection:
        for statement, error in [
            ("SELECT * FROM iso_b.secret", "permission denied for schema iso_b"),
            (
                "INSERT INTO iso_b.secret (value) VALUES ('x')",
                "permission denied for schema iso_b",
            ),
            (
                "CREATE TABLE public.leak (id int)",
                "permission denied for schema public",
            ),
            ("CREATE SCHEMA extra", "permission denied for database aicoder_projects"),
            (
                "CREATE TEMP TABLE scratch (id int)",
                "permission denied to create temporary tables",
            ),
        ]:
            with pytest.raises(
                psycopg.errors.InsufficientPrivilege, match=re.escape(error)
            ):
                connection.execute(statement)
    base = project_url(first).rsplit("/", 1)[0]
    for database in ("iso_c", "postgres"):
        with pytest.raises(
            psycopg.OperationalError, match="User does not have CONNECT privilege"
        ):
            psycopg.connect(libpq_url(f"{base}/{database}"))
    for project in (first, second, third):
        check = manage(project, "check")
        assert check.returncode == 0, check.stderr
        alembic = subprocess.run(
            [".venv/bin/alembic", "check"],
            cwd=project / "backend",
            env=clean_env(),
            capture_output=True,
            text=True,
        )
        assert alembic.returncode == 0, alembic.stderr
    with psycopg.connect(
        libpq_url(postgres_server.admin_url.rsplit("/", 1)[0] + "/aicoder_projects"),
        autocommit=True,
    ) as admin:
        versions = admin.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'alembic_version' ORDER BY 1"
        ).fetchall()
    assert ("iso_a",) in versions
    assert ("iso_b",) in versions
    assert ("public",) not in versions


def code_tree(project: Path) -> dict[str, Path]:
    files = {}
    for path in project.rglob("*"):
        relative = path.relative_to(project)
        if not path.is_file() or NOT_CODE & set(relative.parts):
            continue
        if path.name.startswith("database.sqlite"):
            continue
        # Revision files differ only by their random id, masked here.
        files[without_revision_ids(relative.as_posix())] = path
    return files


def without_revision_ids(text: str) -> str:
    return re.sub(
        r"(?<![0-9a-f])[0-9a-f]{12}(?![0-9a-f])|Create Date: .*", "<id>", text
    )


def test_same_code_and_tests_on_every_tier(
    make_project, postgres_server, project_python
):
    tiers = ("sqlite", "postgres_schema", "postgres_database")
    projects = {
        tier: make_project(f"same-code-{number}", tier)
        for number, tier in enumerate(tiers)
    }
    trees = {tier: code_tree(project) for tier, project in projects.items()}
    reference = trees["sqlite"]
    for tier, tree in trees.items():
        assert set(tree) == set(reference), tier
        different = []
        for name, path in tree.items():
            if name in TIER_SPECIFIC:
                continue
            if name.startswith("backend/migrations/versions/"):
                continue
            if not filecmp.cmp(path, reference[name], shallow=False):
                different.append(name)
        assert different == [], tier
    migrations = {
        tier: [
            without_revision_ids(path.read_text())
            for name, path in sorted(tree.items())
            if name.startswith("backend/migrations/versions/")
        ]
        for tier, tree in trees.items()
    }
    assert migrations["postgres_schema"] == migrations["sqlite"]
    assert migrations["postgres_database"] == migrations["sqlite"]

    # Each PostgreSQL project runs its own tests on a second, throwaway project of the same tier.
    for tier in ("postgres_schema", "postgres_database"):
        scratch = make_project(f"scratch-{tier.split('_')[1]}", tier, init=False)
        tests = run_project_tests(
            ".venv/bin/python",
            projects[tier] / "backend",
            TEST_DATABASE_URL=project_url(scratch),
        )
        assert tests.returncode == 0, tier + tests.stdout[-3000:]
        assert " passed" in tests.stdout


def test_existing_database_url_skips_provisioning(
    make_project, template_source, project_python, tmp_path
):
    provider = make_project("url-source", "postgres_database", models=[], init=False)
    url = project_url(provider)
    destination = tmp_path / "url-user"
    answers = {
        "project_slug": "url-user",
        "database_tier": "postgres_database",
        "database_url": url,
        "install_dependencies": False,
        "models": [{"name": "Note", "fields": {"body": "text required"}}],
    }
    result = copier_copy(template_source, destination, answers)
    assert result.returncode == 0, result.stderr[-3000:]
    assert url not in result.stderr
    assert "manage.py provision" not in result.stderr
    link_venv(destination, project_python)
    env_lines = (destination / "backend" / ".env").read_text().splitlines()
    assert env_lines[1:5] == [
        f"DATABASE_URL={url}",
        "DATABASE_TYPE=postgresql",
        f"SQLALCHEMY_DATABASE_URL={url}",
        "# The admin pages at /admin: user admin, this password.",
    ]
    assert env_lines[5].startswith("ADMIN_PASSWORD=")
    assert env_lines[6].startswith("ADMIN_SECRET_KEY=")
    assert (
        make_url(url).password not in (destination / ".copier-answers.yml").read_text()
    )
    initialized = manage(destination, "init", "--seed-sample")
    assert initialized.returncode == 0, initialized.stderr
    config = json.loads((destination / "db_config.json").read_text())
    assert config["database_type"] == "postgresql"
    assert config["database"] == "url_source"
    assert "provisioning" not in config
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        assert connection.execute("SELECT count(*) FROM note").fetchone() == (5,)
