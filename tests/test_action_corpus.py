"""Malformed and dangerous action text fails with its own error and changes no file or row."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.projects import clean_env
from tests.conftest import link_venv
from tests.test_actions import table_dump, tree_digest

DATA = Path(__file__).parent / "data"
CASES = [
    *yaml.safe_load((DATA / "bad_actions.yml").read_text(encoding="utf-8")),
    *yaml.safe_load((DATA / "dangerous_actions.yml").read_text(encoding="utf-8")),
]


@pytest.fixture(scope="module")
def project(render, project_python):
    project = render({}, name="corpus")
    link_venv(project, project_python)
    return project


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert len({case["id"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_bad_action_changes_nothing(case, project):
    backend = project / "backend"
    files_before = tree_digest(project)
    rows_before = table_dump(project)
    completed = subprocess.run(
        [".venv/bin/python", "manage.py", "--json", "apply"],
        cwd=backend,
        env=clean_env(),
        input=case["text"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    result = json.loads(completed.stdout)
    assert result["status"] == "error"
    messages = [result.get("message", "")] + [
        action.get("message", "") for action in result.get("actions", [])
    ]
    assert any(case["error"] in message for message in messages), messages
    assert tree_digest(project) == files_before
    assert table_dump(project) == rows_before
