"""The health endpoint and the database the tests run on."""

from pathlib import Path

from database import engine

BACKEND_DIR = Path(__file__).resolve().parent.parent


def test_health_reports_database_at_head(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "reachable"
    assert body["at_head"] is True
    assert body["revision"] == body["head"]


def test_tests_never_open_development_database():
    assert engine.url.database != str(BACKEND_DIR / "database.sqlite")
