"""Helpers shared by the benchmarks in this folder.

Run the benchmarks from the repository root with the interpreter of a virtual
environment that has the packages of ``requirements-test.txt``, for example
``.venv/bin/python bench/generation.py``. Importing this module puts
the repository root on ``sys.path``, so ``scripts.projects`` and the test
helpers import when a benchmark runs as a plain script.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

import httpx  # noqa: E402

from scripts.projects import (  # noqa: E402, F401
    clean_env,
    copier_command,
    copier_copy,
    create_venv,
    render_project,
    run,
    snapshot_template,
)
from tests.conftest import free_port  # noqa: E402, F401

SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 10.0


def put_uv_on_path() -> str | None:
    """Prepend this interpreter's bin folder to PATH when uv is installed only there.

    The generation hook and ``create_venv`` look uv up on PATH, and running
    ``.venv/bin/python bench/x.py`` without activating the virtual
    environment leaves its bin folder off PATH. Return the path of the uv found,
    or None.
    """
    if shutil.which("uv") is None:
        bin_dir = Path(sys.executable).parent
        if (bin_dir / "uv").exists():
            os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return shutil.which("uv")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values``, or NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def describe_machine() -> str:
    cpu_model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu_model}, Python {sys.version.split()[0]}"


def describe_revision() -> str:
    """Return the commit that the benchmark's template snapshot starts from.

    ``snapshot_template`` copies the working tree, so uncommitted changes to the
    template are measured too. The result states whether there were any.
    """
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "template", "hooks", "copier.yml"],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if changed:
        return f"commit {commit} plus uncommitted changes to the template"
    return f"commit {commit}"


def describe_load() -> str:
    """Return the 1-minute load average, because other processes skew the timings."""
    return f"load average {os.getloadavg()[0]:.2f} over the last minute"


@contextmanager
def uvicorn_server(
    python: Path, backend_dir: Path, *, workers: int, log_file: Path
) -> Iterator[str]:
    """Start the project's API with uvicorn on 127.0.0.1 and stop it on exit.

    Unlike ``tests.conftest.running_server``, the server's output goes to
    ``log_file``. Under load a failing server logs a traceback per failed
    request. An unread pipe fills up after 64 KiB on Linux, and the server's
    next log write then blocks its event loop.
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
        "--no-access-log",
    ]
    base_url = f"http://127.0.0.1:{port}"
    with log_file.open("w", encoding="utf-8") as log:
        # A new session makes the server and its workers one process group,
        # whose id is the server's process id.
        process = subprocess.Popen(
            command,
            cwd=backend_dir,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_ready(process, base_url, log_file)
            yield base_url
        finally:
            stop_process_group(process)


def wait_until_ready(process: subprocess.Popen, base_url: str, log_file: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    with httpx.Client(trust_env=False, timeout=1) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"uvicorn exited with status {process.returncode}:\n"
                    f"{log_file.read_text(encoding='utf-8')[-3000:]}"
                )
            try:
                client.get(f"{base_url}/health")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"uvicorn did not respond on {base_url} within "
                        f"{SERVER_START_TIMEOUT:.0f} s; see its output in {log_file}"
                    ) from None
                time.sleep(0.1)


def stop_process_group(process: subprocess.Popen) -> None:
    """Send SIGTERM to the server's process group, then SIGKILL if it lingers.

    The group contains the uvicorn supervisor and its workers, so a kill also
    reaches workers that the supervisor did not stop.
    """
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
