"""Fixtures shared by the template tests: a clean template snapshot and one venv.

Rendering many projects is cheap; installing their dependencies is not. Most
tests render with ``install_dependencies=false`` and set the database up with
one shared virtual environment that contains exactly the generated project's
requirements. The tests of the post-generation hook itself install for real.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scripts.projects import clean_env, create_venv, render_project, snapshot_template
from tests.postgres_server import PostgresServer


@pytest.fixture(scope="session")
def template_source(tmp_path_factory) -> Path:
    return snapshot_template(tmp_path_factory.mktemp("template") / "aicoder-template")


@pytest.fixture(scope="session")
def project_python(tmp_path_factory) -> Path:
    """Python of a virtual environment with the generated project's dependencies."""
    return create_venv(tmp_path_factory.mktemp("venv") / "venv")


@pytest.fixture(scope="session")
def render(template_source, project_python, tmp_path_factory):
    """Return a function that renders a project and sets up its database."""

    def make(
        answers: dict | None = None, name: str = "project", *, seed: bool = True
    ) -> Path:
        destination = tmp_path_factory.mktemp(name) / name
        return render_project(
            template_source, destination, answers or {}, project_python, seed=seed
        )

    return make


def link_venv(project: Path, python: Path) -> Path:
    """Make backend/.venv point at the shared environment, so documented commands run as written."""
    link = project / "backend" / ".venv"
    if not link.exists():
        link.symlink_to(python.parent.parent, target_is_directory=True)
    return link / "bin" / "python"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(
    python: Path,
    backend_dir: Path,
    *,
    cwd: Path | None = None,
    workers: int = 1,
    log_file: Path | None = None,
) -> Iterator[str]:
    """Start uvicorn on 127.0.0.1 for the project, yield its base URL, then stop it.

    The output goes to ``log_file`` when given, for a test to read after a
    failed request, and to a temporary file otherwise. The server runs in a
    new session, so stopping it signals its process group, which also reaches
    workers that the uvicorn supervisor did not stop.
    """
    port = free_port()
    command = [
        str(python),
        "-m",
        "uvicorn",
        "main:app",
        "--app-dir",
        str(backend_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    # The log goes to a file, because an unread pipe fills up and blocks the server.
    if log_file is None:
        descriptor, name = tempfile.mkstemp(prefix="uvicorn-", suffix=".log")
        os.close(descriptor)
        log_path = Path(name)
    else:
        log_path = log_file
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd or backend_dir,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise AssertionError(
                        f"uvicorn exited with {process.returncode}:\n"
                        f"{log_path.read_text(encoding='utf-8')}"
                    )
                try:
                    httpx.get(f"{base_url}/health", timeout=1, trust_env=False)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"uvicorn did not respond on {base_url}/health within "
                            f"30 s:\n{log_path.read_text(encoding='utf-8')}"
                        ) from None
                    time.sleep(0.1)
            yield base_url
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    if log_file is None:
        log_path.unlink()


@pytest.fixture
def server():
    """Return the running_server context manager."""
    return running_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | ExternalPostgres]:
    """Start one PostgreSQL server on first request and stop it when the session ends.

    Only sessions with a test that requests this fixture start the server.
    With TEST_POSTGRES_ADMIN_URL set (a CI service container, for example),
    the tests use that server instead of starting one.
    """
    external = os.environ.get("TEST_POSTGRES_ADMIN_URL")
    if external:
        yield ExternalPostgres(external)
        return
    with PostgresServer() as postgres:
        yield postgres


@dataclass(frozen=True)
class ExternalPostgres:
    """A PostgreSQL server the tests did not start, reached through its admin URL."""

    admin_url: str
