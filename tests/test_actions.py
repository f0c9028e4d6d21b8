"""The database actions through manage.py: models grow in place, migrations guard data, failures undo."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from scripts.projects import clean_env, run, run_project_tests
from tests.conftest import link_venv

LIBRARY_MODELS = [
    {"name": "Author", "fields": {"name": "string(100) required unique"}},
    {
        "name": "Book",
        "fields": {
            "title": "string(200) required",
            "status": "enum(draft,published) default=draft",
            "author": "ref(Author) required",
        },
    },
]


@pytest.fixture
def library(render, project_python, tmp_path_factory):
    """A fresh project with sample rows, its .venv linked to the shared environment."""
    project = render({"models": LIBRARY_MODELS}, name="library")
    link_venv(project, project_python)
    return project


def manage(project: Path, *args: str, stdin: str | None = None) -> tuple[int, dict]:
    backend = project / "backend"
    command = [str(backend / ".venv" / "bin" / "python"), "manage.py", "--json", *args]
    if stdin is None:
        result = run(command, cwd=backend, env=clean_env())
    else:
        import subprocess

        completed = subprocess.run(
            command,
            cwd=backend,
            env=clean_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        result = completed
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def tree_digest(project: Path) -> dict[str, str]:
    """Return a digest of every project file except the database and caches."""
    digests = {}
    for path in sorted((project / "backend").rglob("*")):
        relative = path.relative_to(project)
        if not path.is_file() or {
            ".venv",
            "__pycache__",
            "backups",
            ".pytest_cache",
        } & set(relative.parts):
            continue
        if path.name.startswith("database.sqlite"):
            continue
        digests[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    digests["db_config.json"] = hashlib.sha256(
        (project / "db_config.json").read_bytes()
    ).hexdigest()
    return digests


def table_dump(project: Path) -> dict[str, list[tuple]]:
    """Return every table's rows, and the schema, in a stable order."""
    with sqlite3.connect(project / "backend" / "database.sqlite") as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "select name from sqlite_master where type='table' order by name"
            )
        ]
        dump = {
            table: sorted(
                connection.execute(f'select * from "{table}"').fetchall(), key=repr
            )
            for table in tables
        }
        dump["schema"] = sorted(
            connection.execute("select name, sql from sqlite_master").fetchall(),
            key=repr,
        )
    return dump


def test_same_model_twice_changes_nothing(library):
    before = tree_digest(library)
    code, result = manage(
        library,
        "create-model",
        "--name",
        "Author",
        "--field",
        "name: string(100) required unique",
    )
    assert code == 0
    assert result["status"] == "ok"
    assert result["files_changed"] == []
    assert result["summary"] == ["Model Author already matches; nothing changed"]
    assert tree_digest(library) == before


def test_new_fields_are_added_and_migrated(library):
    models_file = library / "backend" / "models.py"
    models_file.write_text(models_file.read_text() + "\n\n# A note written by hand.\n")
    code, result = manage(
        library,
        "create-model",
        "--name",
        "Book",
        "--field",
        "pages: integer default=0",
        "--field",
        "isbn: string(20) unique",
    )
    assert code == 0, result
    assert result["files_changed"] == ["backend/models.py", "backend/schemas.py"]
    assert result["models"][0]["added"] == ["pages", "isbn"]
    source = models_file.read_text()
    assert "# A note written by hand." in source
    assert (
        "    pages: Mapped[int | None] = mapped_column(\n"
        '        sa.Integer(), default=0, server_default="0"\n'
        "    )\n"
    ) in source
    assert (
        "    isbn: Mapped[str | None] = mapped_column(sa.String(20), unique=True)"
        in source
    )

    code, result = manage(library, "migrate", "-m", "add pages and isbn")
    assert code == 0, result
    assert result["operations"] == [
        "add column book.pages",
        "add column book.isbn",
        "add constraint uq_book_isbn",
    ]
    assert len(result["files_changed"]) == 1
    assert result["files_changed"][0].startswith("backend/migrations/versions/")
    assert result["files_changed"][0].endswith("_add_pages_and_isbn.py")
    with sqlite3.connect(library / "backend" / "database.sqlite") as connection:
        assert connection.execute(
            "select count(*), sum(pages) from book"
        ).fetchone() == (5, 0)

    code, result = manage(library, "migrate")
    assert code == 0
    assert result["created_revision"] is None
    assert result["summary"] == [
        f"Models and database match at revision {result['revision']}; no revision created"
    ]


def test_changed_field_needs_replace(library):
    before = tree_digest(library)
    code, result = manage(
        library,
        "create-model",
        "--name",
        "Book",
        "--field",
        "title: string(50) required",
    )
    assert code == 1
    assert result["status"] == "error"
    assert result["message"].startswith(
        "model Book, field title: the code is `title: Mapped[str] = mapped_column(sa.String(200))` "
        "but the spec gives `title: Mapped[str] = mapped_column(sa.String(50))`; nothing was changed."
    )
    assert "--replace also removes the fields the spec leaves out" in result["message"]
    assert tree_digest(library) == before


def test_destructive_migration_needs_permission(library):
    code, result = manage(
        library,
        "create-model",
        "--replace",
        "--name",
        "Book",
        "--field",
        "title: string(50) required",
        "--field",
        "author: ref(Author) required",
    )
    assert code == 0, result
    removed = [item["name"] for item in result["models"][0]["removed"]]
    assert removed == ["status"]
    rows_before = table_dump(library)

    code, result = manage(library, "migrate")
    assert code == 1
    assert result["message"] == (
        "the migration changes book.title from VARCHAR(200) to VARCHAR(50), which can "
        "truncate or reject existing values; drops column book.status and its values; "
        "nothing was changed. Back the data up and pass --allow-destructive "
        '(allow_destructive="true" in an action tag) if that is intended'
    )
    assert table_dump(library) == rows_before
    assert (
        len(list((library / "backend" / "migrations" / "versions").glob("*.py"))) == 1
    )

    code, result = manage(library, "migrate", "--allow-destructive")
    assert code == 0, result
    assert "drop column book.status" in result["operations"]
    assert Path(result["backup"]).exists()
    code, result = manage(library, "check")
    assert code == 0


def test_required_field_on_full_table_fails_first(library):
    manage(
        library, "create-model", "--name", "Book", "--field", "pages: integer required"
    )
    before = tree_digest(library)
    rows_before = table_dump(library)
    code, result = manage(library, "migrate")
    assert code == 1
    assert result["message"] == (
        "the new required field pages of table book has no default, and the table has 5 rows; "
        "give the field a default (default=<value>) or make it optional, then migrate again"
    )
    assert tree_digest(library) == before
    assert table_dump(library) == rows_before


def test_required_field_with_default_fills_rows(library):
    manage(
        library,
        "create-model",
        "--name",
        "Book",
        "--field",
        "pages: integer required default=12",
    )
    code, result = manage(library, "migrate")
    assert code == 0, result
    with sqlite3.connect(library / "backend" / "database.sqlite") as connection:
        assert connection.execute(
            "select count(*) from book where pages = 12"
        ).fetchone() == (5,)


def test_create_crud_for_new_model(library, project_python, server):
    manage(
        library,
        "create-model",
        "--name",
        "Genre",
        "--field",
        "label: string(30) required unique",
    )
    code, result = manage(library, "create-crud", "--model", "Genre")
    assert code == 0, result
    assert result["files_changed"] == [
        "backend/routers/genre.py",
        "backend/tests/test_genre_api.py",
    ]
    code, result = manage(library, "create-crud", "--model", "Genre")
    assert code == 0
    assert result["summary"] == ["Genre already has a router; nothing changed"]
    code, _ = manage(library, "migrate", "-m", "add genre")
    assert code == 0

    import httpx

    with server(project_python, library / "backend") as base_url:
        for label in ("Jazz", "jazz fusion", "Blues"):
            assert (
                httpx.post(f"{base_url}/genres", json={"label": label}).status_code
                == 201
            )
        found = httpx.get(
            f"{base_url}/genres", params={"label": "JAZZ", "sort": "-label"}
        ).json()
    assert [item["label"] for item in found["items"]] == ["jazz fusion", "Jazz"]
    assert found["total"] == 2
    tests = run_project_tests(project_python, library / "backend")
    assert tests.returncode == 0, tests.stdout[-3000:]


def test_unknown_crud_model_is_rejected(library):
    code, result = manage(library, "create-crud", "--model", "Ghost")
    assert code == 2
    assert (
        result["message"]
        == "model Ghost is not defined in models.py; create it first with create-model, or use one of Author, Book"
    )


def test_apply_runs_tags_in_order_and_stops(library):
    text = (
        "Adding a Genre now.\n\n```xml\n"
        '<action type="create_database_model" name="Genre">\nlabel: string(30) required unique\n</action>\n'
        "<action type='create_crud_operations' model='Genre'/>\n"
        '<action type="migrate_database" message="add genre" />\n```\n'
        "And a broken one:\n"
        '<action type="create_database_model" name="Shelf">\nbook: ref(Missing)\n</action>\n'
        '<action type="migrate_database" />\n'
    )
    code, result = manage(library, "apply", stdin=text)
    assert code == 1
    statuses = [(action["type"], action["status"]) for action in result["actions"]]
    assert statuses == [
        ("create_database_model", "ok"),
        ("create_crud_operations", "ok"),
        ("migrate_database", "ok"),
        ("create_database_model", "error"),
        ("migrate_database", "skipped"),
    ]
    assert result["actions"][3]["message"].startswith(
        "model Shelf, field book: ref(Missing) points to a model that does not exist"
    )
    assert (library / "backend" / "routers" / "genre.py").exists()
    assert "class Shelf" not in (library / "backend" / "models.py").read_text()
    with sqlite3.connect(library / "backend" / "database.sqlite") as connection:
        assert connection.execute("select count(*) from genre").fetchone() == (0,)


def test_failed_migration_restores_files_and_rows(library):
    # A server default SQLite cannot parse makes the migration fail mid-way.
    models_file = library / "backend" / "models.py"
    source = models_file.read_text().replace(
        "    title: Mapped[str] = mapped_column(sa.String(200))",
        "    title: Mapped[str] = mapped_column(sa.String(200))\n"
        '    broken: Mapped[str | None] = mapped_column(sa.String(5), server_default=sa.text("nonsense("))',
    )
    models_file.write_text(source)
    before = tree_digest(library)
    rows_before = table_dump(library)
    code, result = manage(library, "migrate")
    assert code == 1
    assert result["status"] == "error"
    assert tree_digest(library) == before
    assert table_dump(library) == rows_before


def test_plain_apply_reports_failed_action(library):
    backend = library / "backend"
    completed = subprocess.run(
        [".venv/bin/python", "manage.py", "apply"],
        cwd=backend,
        env=clean_env(),
        input='<action type="create_database_model" name="Author">\nrating: int\n</action>\n',
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert (
        completed.stdout.splitlines()[0] == "[1] create_database_model (line 1): error"
    )
    assert "error: model Author, field rating: unknown type 'int'" in completed.stdout


def test_irregular_plurals_in_routes_and_keys(render, project_python, server):
    import httpx

    models = [
        {"name": "Box", "fields": {"label": "string(20) required"}},
        {"name": "Shelf", "fields": {"boxes": "many(Box)"}},
    ]
    project = render({"models": models}, name="shelves", seed=False)
    with server(project_python, project / "backend") as base_url:
        box = httpx.post(f"{base_url}/boxes", json={"label": "tools"})
        assert box.status_code == 201, box.text
        shelf = httpx.post(f"{base_url}/shelves", json={"box_ids": [box.json()["id"]]})
        assert shelf.status_code == 201, shelf.text
        assert shelf.json()["box_ids"] == [box.json()["id"]]


def test_foreign_key_conflicts_name_the_field(library, project_python, server):
    import httpx

    with server(project_python, library / "backend") as base_url:
        missing = httpx.post(
            f"{base_url}/books", json={"title": "Orphan", "author_id": 999}
        )
        assert missing.status_code == 409
        assert missing.json()["detail"] == (
            "conflict: author_id 999 names no row of author; use the key of an existing row"
        )
        book = httpx.get(f"{base_url}/books", params={"limit": 1}).json()["items"][0]
        referenced = httpx.delete(f"{base_url}/authors/{book['author_id']}")
        assert referenced.status_code == 409
        detail = referenced.json()["detail"]
        assert detail.startswith(
            f"conflict: Author with id={book['author_id']} is still referenced by "
        )
        assert detail.endswith(
            " rows of book; delete those rows or point them elsewhere first"
        )
