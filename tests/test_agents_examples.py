"""Every example in the generated AGENTS.md runs, in order, on a new project."""

from __future__ import annotations

import re
import subprocess

from scripts.projects import clean_env, run_project_tests
from tests.conftest import link_venv

FENCE = re.compile(r"^```(sh|xml)\n(.*?)^```$", re.M | re.S)


def test_agents_examples_run(render, project_python):
    project = render({}, name="agents-examples")
    link_venv(project, project_python)
    backend = project / "backend"
    agents = (project / "AGENTS.md").read_text()
    blocks = FENCE.findall(agents)
    assert [language for language, _ in blocks] == ["sh", "xml"]

    for language, body in blocks:
        if language == "sh":
            for line in body.strip().splitlines():
                completed = subprocess.run(
                    ["bash", "-c", line],
                    cwd=backend,
                    env=clean_env(),
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert completed.returncode == 0, (
                    f"{line}\n{completed.stdout}\n{completed.stderr}"
                )
        else:
            completed = subprocess.run(
                [".venv/bin/python", "manage.py", "apply"],
                cwd=backend,
                env=clean_env(),
                input=body,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert completed.returncode == 0, (
                f"{body}\n{completed.stdout}\n{completed.stderr}"
            )

    check = subprocess.run(
        [".venv/bin/python", "manage.py", "check"],
        cwd=backend,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    tests = run_project_tests(".venv/bin/python", backend)
    assert tests.returncode == 0, tests.stdout[-3000:]
