"""Benchmark project generation, against a bare ``copier copy`` timed in the same run.

Part (a) times generation to a migrated database with the dependencies already
installed: ``copier copy`` with ``install_dependencies=false`` and then
``manage.py init --seed-sample`` with a prepared virtual environment, which is
what ``scripts.projects.render_project`` does. Its baseline is ``copier copy``
of a template with one file. Part (b) times a full ``copier copy`` with
``install_dependencies=true`` and uv on PATH, after one warm-up run that fills
uv's cache.

Both parts then split the time into the steps the post-generation hook
announces on stderr. Run from the repository root:

    .venv/bin/python bench/generation.py

The benchmark prints figures and ratios; it checks no timing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import yaml
from support import (
    clean_env,
    copier_command,
    copier_copy,
    create_venv,
    describe_load,
    describe_machine,
    describe_revision,
    median,
    put_uv_on_path,
    render_project,
    run,
    snapshot_template,
)

WARM_TARGET_RATIO = 2.0
FULL_TARGET_SECONDS = 10.0

BARE_COPIER_YML = """\
project_name:
  type: str
  default: Demo
"""
BARE_TEMPLATE_FILE = "# {{ project_name }}\n"

# The hook announces each step as "  <step> ..." and its end as "  Done." or
# "  Skipped installing dependencies ...". Copier reports each rendered path as
# "create  <path>", with colour codes, and "Running task 1 of 1" before the hook.
HOOK_STEP_LINE = re.compile(r"^  (?P<step>\S.*?) \.\.\.$")
HOOK_END_LINE = re.compile(r"^  (Done\b|Skipped installing)")
COPIER_CREATE_LINE = re.compile(r"^(?:\x1b\[[0-9;]*m)*\s+create\b")
COPIER_TASK_LINE = re.compile(r"Running task \d+ of \d+")
TOP_LEVEL_IMPORT_LINE = re.compile(
    r"^import time:\s+\d+ \|\s+(?P<cumulative>\d+) \| \S"
)
# The modules that manage.py init imports, for timing imports on their own.
INIT_IMPORTS = (
    "import alembic.autogenerate, database, models, management.cli, "
    "management.migrations, management.project_config, management.seeding"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per measurement (default 5)"
    )
    parser.add_argument(
        "--skip-full", action="store_true", help="skip part (b), the full install"
    )
    parser.add_argument(
        "--keep-dont-write-bytecode",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE from the environment "
        "(by default it is removed, so Python caches bytecode as it does for users)",
    )
    return parser.parse_args()


def write_bare_template(destination: Path) -> Path:
    """Write a template with one question and one file into a new git repository."""
    destination.mkdir(parents=True)
    (destination / "copier.yml").write_text(BARE_COPIER_YML, encoding="utf-8")
    (destination / "README.md.jinja").write_text(BARE_TEMPLATE_FILE, encoding="utf-8")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "bare"],
    ):
        subprocess.run([*git, *args], cwd=destination, check=True)
    return destination


def timed(action: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def new_destination(work: Path, name: str) -> Path:
    """Return a project path in a new folder of its own, where copier_copy puts its answers file."""
    folder = work / name
    folder.mkdir()
    return folder / "project"


def bare_copy(template: Path, destination: Path) -> None:
    result = copier_copy(template, destination, {})
    if result.returncode != 0:
        raise RuntimeError(f"copier copy of the bare template failed:\n{result.stderr}")


def full_copy(template: Path, destination: Path) -> None:
    result = copier_copy(template, destination, {"install_dependencies": True})
    if result.returncode != 0:
        raise RuntimeError(f"full copier copy failed:\n{result.stderr[-3000:]}")


def copy_with_step_times(
    template: Path, destination: Path, answers: dict
) -> dict[str, float]:
    """Run the same ``copier copy`` as ``scripts.projects.copier_copy`` and time its steps.

    The output is read as it arrives, so each hook step lasts from its
    announcement to the next announcement. Returns seconds per step.
    """
    data_file = destination.parent / f"{destination.name}-answers.yml"
    data_file.write_text(yaml.safe_dump(answers), encoding="utf-8")
    command = [
        *copier_command(),
        "copy",
        "--defaults",
        "--data-file",
        str(data_file),
        "--trust",
        str(template),
        str(destination),
    ]
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=destination.parent,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marks: list[tuple[str, float]] = []
    output: list[str] = []
    for line in process.stdout:
        now = time.perf_counter() - start
        output.append(line)
        line = line.rstrip("\n")
        if not marks and COPIER_CREATE_LINE.match(line):
            marks.append(("copier: render files", now))
        elif COPIER_TASK_LINE.search(line):
            marks.append(("hook: start Python", now))
        elif HOOK_END_LINE.match(line):
            marks.append(("copier: finish after the hook", now))
        elif step := HOOK_STEP_LINE.match(line):
            marks.append((f"hook: {step['step']}", now))
    returncode = process.wait()
    end = time.perf_counter() - start
    if returncode != 0:
        raise RuntimeError(f"copier copy failed:\n{''.join(output)[-3000:]}")

    steps = {"copier: start, clone, answers": marks[0][1] if marks else end}
    for (name, begun), (_, ended) in zip(
        marks, [*marks[1:], ("end", end)], strict=True
    ):
        steps[name] = ended - begun
    steps["copier copy: total"] = end
    return steps


def init_with_step_times(backend_dir: Path, venv_python: Path) -> dict[str, float]:
    """Time ``manage.py init --seed-sample`` and the share of it spent importing.

    ``python -X importtime`` reports each top-level import's cumulative time in
    microseconds. It adds some overhead of its own, so this total runs a little
    above the timed runs.
    """
    command = [str(venv_python), "-X", "importtime", "manage.py", "init"]
    started = time.perf_counter()
    result = run([*command, "--seed-sample"], cwd=backend_dir, env=clean_env())
    init_seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"manage.py init failed:\n{result.stdout}{result.stderr}")
    import_seconds = sum_top_level_imports(result.stderr)
    return {
        "init: imports (python -X importtime)": import_seconds,
        "init: interpreter start, migrate, seed": init_seconds - import_seconds,
        "init: total": init_seconds,
    }


def sum_top_level_imports(importtime_output: str) -> float:
    """Return the seconds that top-level imports took, from ``-X importtime`` output."""
    total_microseconds = 0
    for line in importtime_output.splitlines():
        if match := TOP_LEVEL_IMPORT_LINE.match(line):
            total_microseconds += int(match["cumulative"])
    return total_microseconds / 1e6


def time_fresh_venv_imports(work: Path, backend_dir: Path) -> tuple[float, float]:
    """Return the seconds init's imports take in a new venv: first run, then second run.

    uv installs without compiling bytecode, so the first Python process that
    imports a package compiles it. In the hook that process is ``manage.py init``.
    """
    venv_python = create_venv(work / "fresh-venv")
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        result = run(
            [str(venv_python), "-c", INIT_IMPORTS], cwd=backend_dir, env=clean_env()
        )
        seconds.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise RuntimeError(f"importing init's modules failed:\n{result.stderr}")
    return seconds[0], seconds[1]


def median_steps(runs: list[dict[str, float]]) -> dict[str, float]:
    collected: dict[str, list[float]] = defaultdict(list)
    for steps in runs:
        for name, seconds in steps.items():
            collected[name].append(seconds)
    return {name: median(values) for name, values in collected.items()}


def print_steps(title: str, steps: dict[str, float]) -> None:
    print(f"  {title}")
    width = max(len(name) for name in steps)
    for name, seconds in steps.items():
        print(f"    {name:<{width}}  {seconds:6.2f} s")


def format_runs(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def measure_warm(
    work: Path, template: Path, bare: Path, venv_python: Path, repeats: int
) -> None:
    print("(a) Generation to a migrated database, dependencies already installed")
    # One untimed run of each fills the file system cache and writes bytecode.
    bare_copy(bare, new_destination(work, "bare-warmup"))
    render_project(template, new_destination(work, "warm-warmup"), {}, venv_python)

    bare_times: list[float] = []
    warm_times: list[float] = []
    for index in range(repeats):
        # Alternating the two keeps a drift in machine load from favouring either.
        bare_destination = new_destination(work, f"bare-{index}")
        bare_times.append(timed(bare_copy, bare, bare_destination))
        warm_destination = new_destination(work, f"warm-{index}")
        warm_times.append(
            timed(render_project, template, warm_destination, {}, venv_python)
        )
    bare_median = median(bare_times)
    warm_median = median(warm_times)
    ratio = warm_median / bare_median
    print(
        f"  bare copier copy, one-file template:  median {bare_median:.2f} s  (runs: {format_runs(bare_times)})"
    )
    print(
        f"  render_project (copy + init --seed):   median {warm_median:.2f} s  (runs: {format_runs(warm_times)})"
    )
    print(
        f"  ratio {ratio:.2f}x, target at most {WARM_TARGET_RATIO:.0f}x: "
        + ("met" if ratio <= WARM_TARGET_RATIO else "MISSED")
    )

    profiles = []
    for index in range(repeats):
        destination = new_destination(work, f"warm-profile-{index}")
        steps = copy_with_step_times(
            template,
            destination,
            {"install_dependencies": False, "seed_sample_data": True},
        )
        steps.update(init_with_step_times(destination / "backend", venv_python))
        profiles.append(steps)
    print_steps(
        f"where the time goes (median of {repeats} runs):", median_steps(profiles)
    )
    print()


def measure_full(work: Path, template: Path, repeats: int) -> None:
    print("(b) Full generation with install_dependencies=true, uv cache warm")
    # The warm-up run fills uv's cache, so the timed runs install packages from it.
    full_copy(template, new_destination(work, "full-warmup"))

    profiles = []
    for index in range(repeats):
        destination = new_destination(work, f"full-{index}")
        profiles.append(
            copy_with_step_times(template, destination, {"install_dependencies": True})
        )

    totals = [steps["copier copy: total"] for steps in profiles]
    total_median = median(totals)
    print(
        f"  copier copy with install:  median {total_median:.2f} s  (runs: {format_runs(totals)})"
    )
    print(
        f"  target under {FULL_TARGET_SECONDS:.0f} s: "
        + ("met" if total_median < FULL_TARGET_SECONDS else "MISSED")
    )
    print_steps(
        f"where the time goes (median of {repeats} runs):", median_steps(profiles)
    )
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # Without a bytecode cache every import compiles, so there is no second-run gain to show.
        print()
        return
    first, second = time_fresh_venv_imports(work, destination / "backend")
    print(
        f"  init's imports in a new venv: {first:.2f} s the first time, "
        f"{second:.2f} s the second (bytecode compiled and cached by the first)"
    )
    print()


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.repeats < 1:
        print(
            f"error: --repeats must be at least 1, got {args.repeats}", file=sys.stderr
        )
        return 2
    uv = put_uv_on_path()
    if not args.keep_dont_write_bytecode:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        bytecode_note = "set, so every Python process compiles its imports again"
    else:
        bytecode_note = "unset, so Python caches bytecode as it does by default"
    print(f"machine: {describe_machine()}; {describe_load()}")
    print(f"template: {describe_revision()}")
    print(f"uv: {uv or 'not on PATH (the hook falls back to venv and pip)'}")
    print(f"PYTHONDONTWRITEBYTECODE: {bytecode_note}")
    print(f"repeats: {args.repeats}")
    print()

    with tempfile.TemporaryDirectory(prefix="bench-generation-") as temp:
        work = Path(temp)
        template = snapshot_template(work / "aicoder-template")
        bare = write_bare_template(work / "bare-template")
        venv_python = create_venv(work / "venv")
        measure_warm(work, template, bare, venv_python, args.repeats)
        if not args.skip_full:
            measure_full(work, template, args.repeats)
    print(describe_load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
