"""Benchmark one create_database_model plus migrate_database, end to end.

The baseline, measured in the same run on the same project, is
``alembic upgrade head`` with nothing to do: the least a migration command
costs (interpreter start, imports, one database round trip). The measured
step is ``manage.py apply`` on a text with a create_database_model tag and a
migrate_database tag, a new model each time, as an agent's reply would carry
them. Target: at most 3 times the baseline.

Run from the repository root: ``.venv/bin/python bench/actions.py``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from support import (
    clean_env,
    create_venv,
    median,
    put_uv_on_path,
    render_project,
    run,
    snapshot_template,
)

TARGET_RATIO = 3.0
TAGS = """Adding the {name} model and migrating.

<action type="create_database_model" name="{name}">
title: string(120) required
rating: integer default=0
published_on: date
</action>
<action type="migrate_database" message="add {table}" />
"""


def timed(command: list[str], cwd: Path, stdin: str | None = None) -> float:
    import subprocess

    start = time.perf_counter()
    completed = subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=7, help="runs of each step (default 7)"
    )
    args = parser.parse_args()
    put_uv_on_path()
    # Python caches bytecode unless this variable is set. Some machines set it,
    # which makes every run compile its imports again.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    with tempfile.TemporaryDirectory(prefix="bench-actions-") as workdir:
        work = Path(workdir)
        template = snapshot_template(work / "template")
        python = create_venv(work / "venv")
        project = render_project(template, work / "project", {}, python)
        backend = project / "backend"
        alembic = str(python.parent / "alembic")

        # One untimed run of each warms the file cache and the bytecode cache.
        timed([alembic, "upgrade", "head"], backend)
        baseline = [
            timed([alembic, "upgrade", "head"], backend) for _ in range(args.repeat)
        ]

        action_times = []
        for number in range(args.repeat + 1):
            name = f"Story{number}"
            text = TAGS.format(name=name, table=f"story{number}")
            elapsed = timed([str(python), "manage.py", "apply"], backend, stdin=text)
            if number:  # the first run is the warm-up
                action_times.append(elapsed)
        check = run([str(python), "manage.py", "check"], cwd=backend, env=clean_env())
        if check.returncode != 0:
            raise SystemExit(f"manage.py check failed after the runs: {check.stderr}")

    baseline_median = median(baseline)
    action_median = median(action_times)
    ratio = action_median / baseline_median
    print(f"runs per step: {args.repeat}")
    print(
        f"alembic upgrade head, nothing to do (baseline): median {baseline_median * 1000:.0f} ms"
    )
    print(
        f"apply create_database_model + migrate_database:  median {action_median * 1000:.0f} ms"
    )
    print(
        f"ratio: {ratio:.2f}x (target at most {TARGET_RATIO:.0f}x: {'met' if ratio <= TARGET_RATIO else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
