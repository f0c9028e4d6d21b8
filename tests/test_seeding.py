"""management.seeding.seed_database in a rendered project, on its real SQLite database.

Each test calls the function through ``python -c`` in the project's backend
folder, the way ``manage.py seed`` runs it, and reads the tables back through
the project's own column types. Every test starts with empty tables and an
empty ``backend/seeds/`` folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.projects import clean_env, run

MODELS = [
    {
        "name": "Author",
        "fields": {
            "name": "string(100) required unique",
            "born_at": "datetime",
            "active": "boolean required",
            "mentor": "ref(Author)",
        },
    },
    {
        "name": "Book",
        "fields": {
            "title": "string(50) required",
            "author": "ref(Author) required",
            "price": "decimal(8,2) required",
            "genre": "enum(fiction,science,history) required",
            "published_at": "datetime",
            "isbn": "string(13) unique",
            "in_print": "boolean",
            "details": "json",
        },
    },
    {"name": "Shelf", "fields": {"code": "string(10) primary", "books": "many(Book)"}},
]
TABLES = ("author", "book", "shelf", "shelf_books")

SEED_CODE = """
import json, sys
from management.errors import ManagementError
from management.seeding import seed_database
try:
    result = seed_database(**json.loads(sys.argv[1]))
except ManagementError as error:
    print(json.dumps({"error": str(error), "class": type(error).__name__}))
    sys.exit(1)
print(json.dumps(result))
"""

ROWS_CODE = """
import json, sys
import sqlalchemy as sa
import models
from database import SessionLocal
table = models.Base.metadata.tables[sys.argv[1]]
with SessionLocal() as db:
    rows = db.execute(sa.select(table).order_by(*table.primary_key.columns)).mappings()
    print(json.dumps([dict(row) for row in rows], default=str))
"""

COUNTS_CODE = """
import json
import sqlalchemy as sa
import models
from database import SessionLocal
with SessionLocal() as db:
    print(json.dumps({
        name: db.scalar(sa.select(sa.func.count()).select_from(table))
        for name, table in models.Base.metadata.tables.items()
    }))
"""

CLEAR_CODE = """
import models
from database import SessionLocal
with SessionLocal() as db:
    for table in reversed(models.Base.metadata.sorted_tables):
        db.execute(table.delete())
    db.commit()
"""

AUTHORS_JSON = [
    {"id": 1, "name": "Ada Lovelace", "active": True},
    {"id": 2, "name": "Charles Babbage", "active": False, "mentor_id": 1},
]
BOOKS_CSV = (
    "title,author_id,price,genre,published_at,isbn,in_print\n"
    "Notes,1,12.5,science,2024-01-02T03:04:05Z,111,true\n"
    "Engines,2,9.99,history,,222,\n"
)


@pytest.fixture(scope="module")
def seeding_project(render):
    return render({"models": MODELS}, name="seeding", seed=False)


@pytest.fixture
def backend(seeding_project, project_python) -> Path:
    """The project's backend folder with empty tables and no seed files."""
    backend = seeding_project / "backend"
    for path in (backend / "seeds").iterdir():
        if not path.name.startswith("."):
            path.unlink()
    python_output(project_python, backend, CLEAR_CODE)
    return backend


def python_output(project_python, backend: Path, code: str, *args: str) -> str:
    result = run([str(project_python), "-c", code, *args], cwd=backend, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def seed(project_python, backend: Path, **arguments) -> dict:
    """Run seed_database(**arguments) and return its result."""
    result = run(
        [str(project_python), "-c", SEED_CODE, json.dumps(arguments)],
        cwd=backend,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def seed_error(project_python, backend: Path, **arguments) -> str:
    """Run seed_database(**arguments), expect ManagementError and return its message."""
    result = run(
        [str(project_python), "-c", SEED_CODE, json.dumps(arguments)],
        cwd=backend,
        env=clean_env(),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return json.loads(result.stdout)["error"]


def table_rows(project_python, backend: Path, table: str) -> list[dict]:
    return json.loads(python_output(project_python, backend, ROWS_CODE, table))


def row_counts(project_python, backend: Path) -> dict[str, int]:
    counts = json.loads(python_output(project_python, backend, COUNTS_CODE))
    return {table: counts[table] for table in TABLES}


def write_seed(backend: Path, name: str, content: str | list) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (backend / "seeds" / name).write_text(text, encoding="utf-8")


# Formats


def test_json_files_seed_rows(backend, project_python):
    write_seed(backend, "Author.json", AUTHORS_JSON)
    write_seed(
        backend,
        "Book.json",
        [
            {
                "title": "Notes",
                "author_id": 1,
                "price": 12.5,
                "genre": "science",
                "published_at": "2024-01-02T05:04:05+02:00",
                "isbn": "111",
            }
        ],
    )

    result = seed(project_python, backend)

    assert result["type"] == "seed_database"
    assert result["status"] == "ok"
    assert result["rows_seeded"] == {"author": 2, "book": 1}
    assert result["rows_updated"] == {"author": 0, "book": 0}
    assert result["files_read"] == [
        "backend/seeds/Author.json",
        "backend/seeds/Book.json",
    ]
    assert result["summary"] == [
        "Read backend/seeds/Author.json, backend/seeds/Book.json",
        "author: 2 inserted, 0 updated",
        "book: 1 inserted, 0 updated",
    ]
    assert table_rows(project_python, backend, "author") == [
        {
            "id": 1,
            "name": "Ada Lovelace",
            "born_at": None,
            "active": True,
            "mentor_id": None,
        },
        {
            "id": 2,
            "name": "Charles Babbage",
            "born_at": None,
            "active": False,
            "mentor_id": 1,
        },
    ]
    [book] = table_rows(project_python, backend, "book")
    assert book["price"] == "12.50"
    assert book["published_at"] == "2024-01-02 03:04:05+00:00"
    assert book["in_print"] is None


def test_yaml_file_named_after_table(backend, project_python):
    write_seed(
        backend,
        "author.yml",
        "# Authors, keyed by name\n"
        "- name: Ada Lovelace\n"
        "  active: true\n"
        "  born_at: 1815-12-10 09:00:00\n"
        "- name: Grace Hopper\n"
        "  active: no\n",
    )

    result = seed(project_python, backend, file="author.yml")

    assert result["rows_seeded"] == {"author": 2}
    assert result["files_read"] == ["backend/seeds/author.yml"]
    rows = table_rows(project_python, backend, "author")
    assert [(row["name"], row["active"], row["born_at"]) for row in rows] == [
        ("Ada Lovelace", True, "1815-12-10 09:00:00+00:00"),
        ("Grace Hopper", False, None),
    ]


def test_yaml_extension_and_model_argument(backend, project_python):
    write_seed(backend, "people.yaml", "- name: Ada Lovelace\n  active: true\n")

    result = seed(project_python, backend, file="people.yaml", model="Author")

    assert result["rows_seeded"] == {"author": 1}


def test_csv_file_converts_text_to_column_types(backend, project_python):
    write_seed(backend, "Author.json", AUTHORS_JSON)
    write_seed(backend, "Book.csv", BOOKS_CSV)

    result = seed(project_python, backend)

    assert result["rows_seeded"] == {"author": 2, "book": 2}
    books = table_rows(project_python, backend, "book")
    assert books == [
        {
            "id": 1,
            "title": "Notes",
            "author_id": 1,
            "price": "12.50",
            "genre": "science",
            "published_at": "2024-01-02 03:04:05+00:00",
            "isbn": "111",
            "in_print": True,
            "details": None,
        },
        {
            "id": 2,
            "title": "Engines",
            "author_id": 2,
            "price": "9.99",
            "genre": "history",
            "published_at": None,
            "isbn": "222",
            "in_print": None,
            "details": None,
        },
    ]


def test_csv_json_cell_seeded_once(backend, project_python):
    write_seed(backend, "Author.json", AUTHORS_JSON)
    # No id and no isbn: the row matches a row with the same values, JSON included.
    write_seed(
        backend,
        "Book.csv",
        'title,author_id,price,genre,details\nAtlas,1,5,science,"{""pages"": 120, ""scale"": 1.5}"\n',
    )

    first = seed(project_python, backend)
    second = seed(project_python, backend)

    assert first["rows_seeded"] == {"author": 2, "book": 1}
    assert second["rows_seeded"] == {"author": 0, "book": 0}
    assert second["rows_updated"] == {"author": 0, "book": 0}
    [book] = table_rows(project_python, backend, "book")
    assert book["details"] == {"pages": 120, "scale": 1.5}


def test_csv_invalid_json_cell(backend, project_python):
    write_seed(backend, "Author.json", AUTHORS_JSON)
    write_seed(
        backend,
        "Book.csv",
        "title,author_id,price,genre,details\nAtlas,1,5,science,{pages: 120}\n",
    )

    message = seed_error(project_python, backend)

    assert message == (
        "seeds/Book.csv line 2, field details: invalid JSON: Expecting property "
        "name enclosed in double quotes; write the cell as JSON text, or remove the row"
    )
    assert row_counts(project_python, backend) == dict.fromkeys(TABLES, 0)


BODIES = {
    "json": json.dumps(
        [
            {"name": "Ada Lovelace", "active": True},
            {"name": "Alan Turing", "active": "false"},
        ]
    ),
    "yaml": "- name: Ada Lovelace\n  active: true\n- name: Alan Turing\n  active: false\n",
    "csv": "name,active\nAda Lovelace,true\nAlan Turing,false\n",
}


@pytest.mark.parametrize("body_format", sorted(BODIES))
def test_body_seeds_rows(backend, project_python, body_format):
    result = seed(project_python, backend, model="Author", body=BODIES[body_format])

    assert result["rows_seeded"] == {"author": 2}
    assert result["files_read"] == []
    rows = table_rows(project_python, backend, "author")
    assert [(row["name"], row["active"]) for row in rows] == [
        ("Ada Lovelace", True),
        ("Alan Turing", False),
    ]


# Generated rows


def test_generated_count_fills_table_once(backend, project_python):
    first = seed(project_python, backend, model="Book", count=5)
    counts = row_counts(project_python, backend)

    assert first["rows_seeded"]["book"] == 5
    assert first["rows_seeded"]["author"] == counts["author"]
    assert counts["book"] == 5
    assert counts["author"] >= 1

    second = seed(project_python, backend, model="Book", count=5)

    assert second["rows_seeded"] == {"book": 0}
    assert second["summary"] == ["book already has 5 rows; nothing inserted"]
    assert row_counts(project_python, backend) == counts

    third = seed(project_python, backend, model="Book", count=8)

    assert third["rows_seeded"] == {"book": 3}
    books = table_rows(project_python, backend, "book")
    assert len(books) == 8
    isbns = [book["isbn"] for book in books]
    assert len(set(isbns)) == len(isbns)
    for book in books:
        assert len(book["title"]) <= 50
        assert len(book["isbn"]) <= 13
        assert book["genre"] in {"fiction", "science", "history"}


def test_generated_count_for_every_model(backend, project_python):
    result = seed(project_python, backend, count=3)

    assert result["rows_seeded"] == {"author": 3, "book": 3, "shelf": 3}
    assert result["rows_updated"] == {"author": 0, "book": 0, "shelf": 0}
    counts = row_counts(project_python, backend)
    assert counts["author"] == 3
    assert counts["book"] == 3
    assert counts["shelf"] == 3

    again = seed(project_python, backend, count=3)

    assert again["rows_seeded"] == {"author": 0, "book": 0, "shelf": 0}
    assert row_counts(project_python, backend) == counts


# Upserts and order


def test_seeding_twice_inserts_nothing(backend, project_python):
    write_seed(backend, "Author.json", AUTHORS_JSON)
    write_seed(backend, "Book.csv", BOOKS_CSV)
    # Rows with no key and no unique value match a row with the same values.
    write_seed(
        backend,
        "book.yaml",
        "- title: Untitled\n  author_id: 1\n  price: 1\n  genre: fiction\n",
    )
    write_seed(backend, "Shelf.json", [{"code": "A1", "book_ids": [1, 2]}])
    first = seed(project_python, backend)
    counts = row_counts(project_python, backend)

    second = seed(project_python, backend)

    assert first["rows_seeded"] == {"author": 2, "book": 3, "shelf": 1}
    assert second["rows_seeded"] == {"author": 0, "book": 0, "shelf": 0}
    assert second["rows_updated"] == {"author": 0, "book": 0, "shelf": 0}
    assert counts == {"author": 2, "book": 3, "shelf": 1, "shelf_books": 2}
    assert row_counts(project_python, backend) == counts


def test_upsert_updates_changed_value(backend, project_python):
    write_seed(backend, "Author.json", AUTHORS_JSON)
    write_seed(backend, "Book.csv", BOOKS_CSV)
    seed(project_python, backend)
    # Without ids, the rows match by isbn, the first unique field they give.
    write_seed(
        backend,
        "Book.csv",
        BOOKS_CSV.replace("Notes,1,12.5", "Notes,1,14.75"),
    )

    result = seed(project_python, backend, file="Book.csv")

    assert result["rows_seeded"] == {"book": 0}
    assert result["rows_updated"] == {"book": 1}
    books = table_rows(project_python, backend, "book")
    assert [(book["isbn"], book["price"]) for book in books] == [
        ("111", "14.75"),
        ("222", "9.99"),
    ]


def test_upsert_by_primary_key_and_many_to_many(backend, project_python):
    write_seed(backend, "Author.json", AUTHORS_JSON)
    write_seed(backend, "Book.csv", BOOKS_CSV)
    seed(project_python, backend)
    seed(project_python, backend, model="Shelf", body="code,book_ids\nA1,1;2\n")

    result = seed(project_python, backend, model="Shelf", body="code,book_ids\nA1,2\n")
    renamed = seed(
        project_python,
        backend,
        model="Author",
        body='[{"id": 2, "name": "C. Babbage", "active": false}]',
    )

    assert result["rows_seeded"] == {"shelf": 0}
    assert result["rows_updated"] == {"shelf": 1}
    assert table_rows(project_python, backend, "shelf_books") == [
        {"shelf_id": "A1", "book_id": 2}
    ]
    assert renamed["rows_updated"] == {"author": 1}
    authors = table_rows(project_python, backend, "author")
    assert [author["name"] for author in authors] == ["Ada Lovelace", "C. Babbage"]


def test_parents_load_first_whatever_file_order(backend, project_python):
    # Files are read by name, and "Book" and "Shelf" sort before "author".
    write_seed(backend, "Shelf.yaml", "- code: A1\n  book_ids: [1, 2]\n")
    write_seed(backend, "Book.csv", BOOKS_CSV)
    write_seed(backend, "author.json", AUTHORS_JSON)

    result = seed(project_python, backend)

    assert result["files_read"] == [
        "backend/seeds/Book.csv",
        "backend/seeds/Shelf.yaml",
        "backend/seeds/author.json",
    ]
    assert result["rows_seeded"] == {"author": 2, "book": 2, "shelf": 1}
    assert row_counts(project_python, backend)["shelf_books"] == 2


def test_self_reference_to_later_row(backend, project_python):
    write_seed(
        backend,
        "Author.json",
        [
            {"id": 1, "name": "Student", "active": True, "mentor_id": 2},
            {"id": 2, "name": "Teacher", "active": True},
        ],
    )

    result = seed(project_python, backend)

    assert result["rows_seeded"] == {"author": 2}
    authors = table_rows(project_python, backend, "author")
    assert [author["mentor_id"] for author in authors] == [2, None]


# Bad rows

BAD_BOOK_ROWS = {
    "type": (
        "Book.csv",
        BOOKS_CSV + "Sums,1,abc,science,,333,\n",
        "seeds/Book.csv line 4, field price: Input should be a valid decimal; "
        "fix the value or remove the row",
    ),
    "length": (
        "Book.csv",
        BOOKS_CSV + f"{'x' * 51},1,1,science,,333,\n",
        "seeds/Book.csv line 4, field title: String should have at most 50 "
        "characters; fix the value or remove the row",
    ),
    "enum": (
        "Book.csv",
        BOOKS_CSV + "Odes,1,1,poetry,,333,\n",
        "seeds/Book.csv line 4, field genre: Input should be 'fiction', 'science' "
        "or 'history'; fix the value or remove the row",
    ),
    "missing_required": (
        "Book.csv",
        BOOKS_CSV + ",1,1,science,,333,\n",
        "seeds/Book.csv line 4, field title: Field required; give title a value, "
        "or remove the row",
    ),
    "unknown_field": (
        "Book.json",
        json.dumps(
            [
                {"title": "Odes", "author_id": 1, "price": 1, "genre": "fiction"},
                {
                    "title": "Sums",
                    "author_id": 1,
                    "price": 1,
                    "genre": "fiction",
                    "colour": "red",
                },
            ]
        ),
        "seeds/Book.json row 2, field colour: unknown field; use one of title, "
        "author_id, price, genre, published_at, isbn, in_print, details, id, or "
        "remove it",
    ),
    "missing_parent": (
        "Book.csv",
        BOOKS_CSV + "Sums,99,1,science,,333,\n",
        "seeds/Book.csv line 4, field author_id: no Author row has id 99; "
        "add that Author row first or fix the value",
    ),
    "missing_related_row": (
        "Shelf.yaml",
        "- code: A1\n  book_ids: [1]\n- code: B2\n  book_ids: [1, 7]\n",
        "seeds/Shelf.yaml row 2, field book_ids: no Book row has id 7; "
        "add that Book row first or fix the value",
    ),
    "unique_taken": (
        "Book.json",
        json.dumps(
            [
                {
                    "id": 1,
                    "title": "Odes",
                    "author_id": 1,
                    "price": 1,
                    "genre": "fiction",
                    "isbn": "111",
                },
                {
                    "id": 2,
                    "title": "Sums",
                    "author_id": 1,
                    "price": 1,
                    "genre": "fiction",
                    "isbn": "111",
                },
            ]
        ),
        "seeds/Book.json row 2, field isbn: another Book row already has isbn "
        "'111'; use a different value or remove the row",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BOOK_ROWS))
def test_bad_row_commits_nothing(backend, project_python, case):
    file_name, content, expected = BAD_BOOK_ROWS[case]
    write_seed(backend, "Author.json", AUTHORS_JSON)
    if file_name == "Shelf.yaml":
        write_seed(backend, "Book.csv", BOOKS_CSV)
    write_seed(backend, file_name, content)

    message = seed_error(project_python, backend)

    assert message == expected
    assert row_counts(project_python, backend) == dict.fromkeys(TABLES, 0)


def test_csv_line_counts_lines_of_quoted_cells(backend, project_python):
    write_seed(backend, "Author.json", AUTHORS_JSON)
    write_seed(
        backend,
        "Book.csv",
        "title,author_id,price,genre\n"
        '"A title\nover two lines",1,1,fiction\n'
        "Sums,1,1,poetry\n",
    )

    message = seed_error(project_python, backend)

    assert message.startswith("seeds/Book.csv line 4, field genre: ")


def test_body_error_names_body(backend, project_python):
    message = seed_error(
        project_python,
        backend,
        model="Author",
        body="- name: Ada Lovelace\n  active: true\n- name: Alan Turing\n  active: maybe\n",
    )

    assert message == (
        "body row 2, field active: Input should be a valid boolean, unable to "
        "interpret input; fix the value or remove the row"
    )
    assert row_counts(project_python, backend)["author"] == 0


def test_relation_object_name_hints_at_key_field(backend, project_python):
    message = seed_error(
        project_python,
        backend,
        model="Book",
        body='[{"title": "Odes", "author": 1, "price": 1, "genre": "fiction"}]',
    )

    assert message == (
        "body row 1, field author: unknown field; write it as author_id, "
        "the key of the related row"
    )


# Bad sources and arguments

SOURCE_ERRORS = {
    "unknown_model": (
        {"model": "Novel", "count": 2},
        "unknown model 'Novel'; use one of Author, Book, Shelf, or the table "
        "name of one",
    ),
    "empty_body": (
        {"model": "Author", "body": "  \n"},
        "body is empty; give rows as a JSON list of objects, a YAML list of "
        "mappings, or CSV text with a header row",
    ),
    "body_without_model": (
        {"body": "[]"},
        "body needs model; pass model with the name of the model the rows belong to",
    ),
    "two_sources": (
        {"model": "Author", "file": "Author.json", "count": 2},
        "give at most one of file, body and count, got file and count; "
        "seed from one source per call",
    ),
    "count_below_one": (
        {"count": 0},
        "count must be a whole number of at least 1, got 0",
    ),
    "path_in_file": (
        {"file": "../Author.json"},
        "file must be a file name inside backend/seeds/, got '../Author.json'; "
        "write the bare file name, for example Book.json",
    ),
    "missing_file": (
        {"file": "Author.json"},
        "seed file 'Author.json' not found in backend/seeds/ (files there: none); "
        "check the name or add the file",
    ),
    "invalid_json": (
        {"model": "Author", "body": '[{"name": "Ada"'},
        "body is not valid JSON: Expecting ',' delimiter at line 1, column 16; "
        "fix the syntax",
    ),
    "not_a_list": (
        {"model": "Author", "body": '{"name": "Ada", "active": true}'},
        "body must contain a list of rows, got an object; write the rows as a list "
        "of objects",
    ),
    "csv_row_too_short": (
        {"model": "Author", "body": "name,active\nAda Lovelace\n"},
        "body line 2: 1 values for 2 columns; give one value per header column, "
        "or remove the row",
    ),
}


@pytest.mark.parametrize("case", sorted(SOURCE_ERRORS))
def test_source_error_is_one_line(backend, project_python, case):
    arguments, expected = SOURCE_ERRORS[case]

    message = seed_error(project_python, backend, **arguments)

    assert message == expected


SEED_FOLDER_ERRORS = {
    "unsupported_extension": (
        "authors.txt",
        "Ada",
        "seeds/authors.txt has the unsupported extension '.txt'; rename it to end "
        "in .json, .yaml, .yml or .csv, or move it out of backend/seeds/",
    ),
    "unknown_model_file": (
        "Novel.json",
        "[]",
        "seeds/Novel.json does not name a model: no model or table is called "
        "'Novel'; rename the file after one of Author, Book, Shelf, or pass model",
    ),
    "empty_file": (
        "Author.csv",
        "",
        "seeds/Author.csv is empty; add rows to it, or delete it",
    ),
    "invalid_yaml": (
        "Author.yaml",
        "- name: [Ada\n",
        "seeds/Author.yaml is not valid YAML: expected ',' or ']', but got "
        "'<stream end>' at line 2, column 1; fix the syntax",
    ),
}


@pytest.mark.parametrize("case", sorted(SEED_FOLDER_ERRORS))
def test_seed_folder_error_is_one_line(backend, project_python, case):
    file_name, content, expected = SEED_FOLDER_ERRORS[case]
    write_seed(backend, file_name, content)

    message = seed_error(project_python, backend)

    assert message == expected


def test_unreadable_encoding(backend, project_python):
    (backend / "seeds" / "Author.csv").write_bytes("name\nJosé\n".encode("latin-1"))

    message = seed_error(project_python, backend, file="Author.csv")

    assert message == (
        "cannot read seeds/Author.csv: it is not UTF-8 text; save it with UTF-8 encoding"
    )


def test_empty_seed_folder_seeds_nothing(backend, project_python):
    result = seed(project_python, backend)

    assert result["rows_seeded"] == {}
    assert result["files_read"] == []
    assert result["summary"] == [
        "backend/seeds/ has no seed files; add one per model, named like "
        "Book.json, Book.yaml or Book.csv, or pass count to generate rows"
    ]


# Sample rows for manage.py init --seed-sample


def test_sample_rows_fill_only_empty_tables(backend, project_python):
    write_seed(backend, "Author.json", AUTHORS_JSON)
    seed(project_python, backend)

    output = python_output(
        project_python,
        backend,
        "import json\nfrom management.seeding import seed_sample_rows\n"
        "print(json.dumps(seed_sample_rows(4)))",
    )

    assert json.loads(output) == {"book": 4, "shelf": 4}
    counts = row_counts(project_python, backend)
    assert counts["author"] == 2
    assert counts["book"] == 4
