"""Invalid answers and model specs stop generation with a clear error and leave nothing behind."""

from __future__ import annotations

import pytest

from scripts.projects import copier_copy

INVALID_MODELS = {
    "unknown-type": (
        [{"name": "Book", "fields": {"title": "varchar(20)"}}],
        "model Book, field title: unknown type 'varchar(20)'; fix: use one of string(n), text,",
    ),
    "python-keyword": (
        [{"name": "Book", "fields": {"class": "string(10)"}}],
        "model Book, field class: field name 'class' is a Python keyword; fix: rename it, for example class_value",
    ),
    "sql-reserved-word": (
        [{"name": "Book", "fields": {"order": "integer"}}],
        "model Book, field order: field name 'order' is a reserved SQL word; fix: rename it, for example book_order",
    ),
    "generator-name": (
        [{"name": "Book", "fields": {"metadata": "json"}}],
        "model Book, field metadata: field name 'metadata' is used by SQLAlchemy, Pydantic or the generated code",
    ),
    "duplicate-model": (
        [{"name": "Book", "fields": {}}, {"name": "Book", "fields": {}}],
        "model Book: duplicate model name 'Book'; fix: give every model its own name",
    ),
    "duplicate-ref-column": (
        [
            {"name": "Author", "fields": {}},
            {
                "name": "Book",
                "fields": {"author": "ref(Author)", "author_id": "integer"},
            },
        ],
        "model Book, field author_id: duplicate field name 'author_id'",
    ),
    "missing-ref-target": (
        [{"name": "Book", "fields": {"author": "ref(Writer) required"}}],
        "model Book, field author: ref(Writer) points to a model that does not exist; fix: add a model named Writer, or point to one of Book",
    ),
    "unknown-modifier": (
        [{"name": "Book", "fields": {"title": "string(20) mandatory"}}],
        "model Book, field title: unknown modifier 'mandatory'; fix: use the modifiers required, unique, index, primary, default=<value>",
    ),
    "string-without-length": (
        [{"name": "Book", "fields": {"title": "string"}}],
        "model Book, field title: string needs a maximum length, got string()",
    ),
    "bad-default": (
        [{"name": "Book", "fields": {"pages": "integer default=many"}}],
        "model Book, field pages: default 'many' is not an integer from -2147483648 to 2147483647",
    ),
    "lowercase-model": (
        [{"name": "book", "fields": {}}],
        "model book: model name 'book' is not PascalCase",
    ),
    "not-a-list": (
        {"name": "Book"},
        "models must be a list of model specs, got dict",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_MODELS), ids=sorted(INVALID_MODELS))
def test_invalid_model_spec_stops_generation(case, template_source, tmp_path):
    models, expected = INVALID_MODELS[case]
    destination = tmp_path / "app"
    result = copier_copy(
        template_source, destination, {"models": models, "install_dependencies": False}
    )
    assert result.returncode == 1
    assert f"error: Writing models failed: {expected}" in result.stderr
    assert "Fix the models answer and run copier copy again." in result.stderr
    assert not destination.exists()


INVALID_SLUGS = {
    "uppercase": "MyApp",
    "leading-digit": "1app",
    "space": "my app",
    "too-long": "a" * 41,
}


@pytest.mark.parametrize("case", sorted(INVALID_SLUGS), ids=sorted(INVALID_SLUGS))
def test_invalid_slug_is_rejected(case, template_source, tmp_path):
    slug = INVALID_SLUGS[case]
    destination = tmp_path / "app"
    result = copier_copy(
        template_source,
        destination,
        {"project_slug": slug, "install_dependencies": False},
    )
    assert result.returncode != 0
    assert (
        f'project_slug "{slug}" is invalid: use 1 to 40 lowercase letters, digits, - and _'
        in result.stderr
    )
    assert not destination.exists()


def test_slug_derived_from_name(render):
    project = render(
        {"project_name": "2048 Game: Deluxe Édition!"}, name="derived", seed=False
    )
    answers = (project / ".copier-answers.yml").read_text()
    assert "project_slug: game-deluxe-dition" in answers.splitlines()


def test_copy_without_trust_explains_flag(template_source, tmp_path):
    destination = tmp_path / "app"
    result = copier_copy(template_source, destination, {}, trust=False)
    assert result.returncode == 4
    assert "Template uses potentially unsafe feature: tasks." in result.stderr
    assert "consider adding the `--trust` option" in result.stderr
    assert not destination.exists()


def test_postgres_tier_without_admin_url_fails_cleanly(template_source, tmp_path):
    destination = tmp_path / "app"
    result = copier_copy(
        template_source, destination, {"database_tier": "postgres_schema"}
    )
    assert result.returncode == 1
    assert (
        "error: Provisioning the project's PostgreSQL schema failed: ADMIN_DATABASE_URL "
        "is not set; export the URL of a PostgreSQL superuser"
    ) in result.stderr
    assert (
        "To run this step again: cd backend && .venv/bin/python manage.py provision --tier postgres_schema"
        in result.stderr
    )
    assert not destination.exists()


def test_database_url_answer_must_be_postgres(template_source, tmp_path):
    destination = tmp_path / "app"
    answers = {"database_tier": "postgres_database", "database_url": "mysql://x@h/db"}
    result = copier_copy(template_source, destination, answers)
    assert result.returncode != 0
    assert (
        "database_url must start with postgresql:// or postgresql+psycopg://"
        in result.stderr
    )
    assert "mysql://x@h/db" not in result.stderr
    assert not destination.exists()
