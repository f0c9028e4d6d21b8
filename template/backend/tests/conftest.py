"""Fixtures: the tests run on a throwaway database, never on backend/database.sqlite.

``TEST_DATABASE_URL`` selects another database (for example a PostgreSQL one);
without it the tests use a new SQLite file in a temporary folder.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

TEST_DIR = Path(tempfile.mkdtemp(prefix="backend-tests-"))
# Set before database.py is imported: an exported DATABASE_URL wins over .env.
os.environ["DATABASE_URL"] = os.environ.get(
    "TEST_DATABASE_URL", f"sqlite:///{TEST_DIR / 'test.sqlite'}"
)

from alembic import command  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import inspect  # noqa: E402

import models  # noqa: E402
from database import SessionLocal, engine  # noqa: E402
from main import app  # noqa: E402
from management.migrations import alembic_config  # noqa: E402
from management.samples import SampleFactory, changed_value, to_json  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def migrated_database():
    command.upgrade(alembic_config(), "head")
    yield
    engine.dispose()
    shutil.rmtree(TEST_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def empty_tables(migrated_database):
    """Delete every row after each test, children before parents."""
    yield
    with engine.begin() as connection:
        for table in reversed(models.Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def client():
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def sample_payload():
    """Return a function giving a JSON payload for a new row of a model.

    Rows that a foreign key needs are inserted first.
    """
    factory = SampleFactory(seed=1)

    def make(model):
        with SessionLocal() as db:
            values = factory.row_values(model, db)
            db.commit()
        return {key: to_json(value) for key, value in values.items()}

    return make


@pytest.fixture
def sample_keys():
    """Return a function that inserts rows of a model and returns their keys."""
    factory = SampleFactory(seed=3)

    def make(model, count):
        with SessionLocal() as db:
            rows = [model(**factory.row_values(model, db)) for _ in range(count)]
            db.add_all(rows)
            db.commit()
            return [inspect(row).identity[0] for row in rows]

    return make


@pytest.fixture
def changed_values():
    """Return a function giving one changed, non-key column for an update."""
    factory = SampleFactory(seed=2)

    def make(model, payload):
        for column in model.__table__.columns:
            if column.primary_key or column.foreign_keys or column.key not in payload:
                continue
            value = changed_value(column, payload[column.key], factory)
            return {column.key: to_json(value)}
        return {}

    return make
