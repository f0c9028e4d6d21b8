"""Render projects from this template with the real Copier and run their tools.

Tests and benchmarks share these helpers. Copier runs as a subprocess, the way
users run it, from a clean git snapshot of the working tree, so uncommitted
edits are tested too and Copier never sees a dirty repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS_DEV = REPO_DIR / "template" / "backend" / "requirements-dev.txt"
SNAPSHOT_TAG = "v0.0.1"


def copier_command() -> list[str]:
    """Return the command that runs Copier with the current interpreter."""
    return [sys.executable, "-m", "copier"]


def snapshot_template(destination: Path, tag: str = SNAPSHOT_TAG) -> Path:
    """Copy the template's files into a new git repository with one tagged commit."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_DIR,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    destination.mkdir(parents=True)
    for relative in filter(None, listed.split("\0")):
        source = REPO_DIR / relative
        if not source.is_file():
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    git = ["git", "-c", "user.name=tests", "-c", "user.email=tests@example.com"]
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "snapshot"],
        ["tag", tag],
    ):
        subprocess.run([*git, *args], cwd=destination, check=True)
    return destination


def create_venv(destination: Path, requirements: Path = REQUIREMENTS_DEV) -> Path:
    """Create a virtual environment with the generated project's dependencies."""
    uv = shutil.which("uv")
    python = destination / "bin" / "python"
    if uv:
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(destination)], check=True
        )
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--python",
                str(python),
                "-r",
                str(requirements),
            ],
            check=True,
        )
    else:
        subprocess.run([sys.executable, "-m", "venv", str(destination)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
                str(requirements),
            ],
            check=True,
        )
    return python


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


def run(
    command: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> CommandResult:
    """Run a command with no standard input and return its exit status and output."""
    completed = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CommandResult(completed.returncode, completed.stdout, completed.stderr)


def copier_copy(
    template: Path,
    destination: Path,
    answers: dict,
    *,
    trust: bool = True,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> CommandResult:
    """Run ``copier copy`` with ``answers`` in a data file, as a user would."""
    data_file = destination.parent / f"{destination.name}-answers.yml"
    data_file.write_text(yaml.safe_dump(answers, sort_keys=False), encoding="utf-8")
    command = [*copier_command(), "copy", "--defaults", "--data-file", str(data_file)]
    if trust:
        command.append("--trust")
    command += [*(extra or []), str(template), str(destination)]
    return run(command, cwd=destination.parent, env=env or clean_env())


def clean_env(**overrides: str) -> dict[str, str]:
    """Return the environment without variables that would redirect the project."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DATABASE_URL",
            "TEST_DATABASE_URL",
            "ADMIN_DATABASE_URL",
            "VIRTUAL_ENV",
        }
    }
    env.update(overrides)
    return env


def render_project(
    template: Path,
    destination: Path,
    answers: dict,
    venv_python: Path,
    *,
    seed: bool = True,
) -> Path:
    """Render a project without installing and set up its database with ``venv_python``.

    This is what the post-generation hook does after installing, minus the
    install, so many projects can share one virtual environment.
    """
    answers = {"install_dependencies": False, "seed_sample_data": seed, **answers}
    result = copier_copy(template, destination, answers)
    if result.returncode != 0:
        raise AssertionError(
            f"copier copy failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    init = [str(venv_python), "manage.py", "init"] + (["--seed-sample"] if seed else [])
    result = run(init, cwd=destination / "backend", env=clean_env())
    if result.returncode != 0:
        raise AssertionError(
            f"manage.py init failed:\n{result.stdout}\n{result.stderr[-3000:]}"
        )
    return destination


def run_project_tests(python: Path | str, backend: Path, **env: str) -> CommandResult:
    """Run a rendered project's own test suite with ``python``."""
    command = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    return run(command, cwd=backend, env=clean_env(**env), timeout=900)


GIT_AS_TESTS = ["git", "-c", "user.name=tests", "-c", "user.email=tests@example.com"]


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as the tests' author and return its standard output."""
    completed = subprocess.run(
        [*GIT_AS_TESTS, *args],
        cwd=repo,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed ({completed.returncode}):\n{completed.stderr}"
        )
    return completed.stdout


def commit_all(repo: Path, message: str) -> None:
    """Stage every change in ``repo`` that .gitignore allows and commit it."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def copier_update(
    project: Path, *, extra: list[str] | None = None, env: dict[str, str] | None = None
) -> CommandResult:
    """Run ``copier update --trust --defaults`` in ``project`` as a user would."""
    command = [*copier_command(), "update", "--trust", "--defaults", *(extra or [])]
    return run(command, cwd=project, env=env or clean_env())
