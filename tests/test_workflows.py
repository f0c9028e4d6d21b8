"""The GitHub Actions workflows pass actionlint."""

from __future__ import annotations

import subprocess
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"


def test_workflows_pass_actionlint():
    files = sorted(str(path) for path in WORKFLOWS.glob("*.yml"))
    assert files, "no workflow files found"
    result = subprocess.run(
        ["actionlint", "-shellcheck=", "-pyflakes=", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
