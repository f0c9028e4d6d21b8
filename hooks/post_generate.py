"""Finish a newly generated project: write the models, install, create the database.

Copier runs this script in the new project's folder after rendering it. It
uses only the standard library, because the project's virtual environment
does not exist yet. Each step calls the project's own ``backend/manage.py``,
so a person can redo any of them by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


class StepError(Exception):
    """A step failed; the message names it and the command to run it again."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--models-json", required=True, help="the models answer as JSON"
    )
    parser.add_argument("--tier", default="sqlite", help="the database_tier answer")
    parser.add_argument("--template-version", default="unversioned")
    parser.add_argument("--project-slug", default="app", help="the project_slug answer")
    parser.add_argument(
        "--existing-database",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="backend/.env already names a database (the database_url answer)",
    )
    parser.add_argument(
        "--seed-sample", action=argparse.BooleanOptionalAction, default=False
    )
    parser.add_argument(
        "--install", action=argparse.BooleanOptionalAction, default=True
    )
    parser.add_argument(
        "--admin-page",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="generate the admin page's password and session key into backend/.env",
    )
    return parser.parse_args(argv)


def add_admin_secrets(env_file: Path) -> None:
    """Append a new admin password and session key to backend/.env, once.

    They exist nowhere else: not in .copier-answers.yml, db_config.json or any output.
    """
    text = env_file.read_text(encoding="utf-8") if env_file.exists() else ""
    if "ADMIN_PASSWORD=" in text:
        return
    if text and not text.endswith("\n"):
        text += "\n"
    text += (
        "# The admin pages at /admin: user admin, this password.\n"
        f"ADMIN_PASSWORD={secrets.token_urlsafe(18)}\n"
        f"ADMIN_SECRET_KEY={secrets.token_urlsafe(32)}\n"
    )
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def venv_python(backend_dir: Path) -> Path:
    if os.name == "nt":
        return backend_dir / ".venv" / "Scripts" / "python.exe"
    return backend_dir / ".venv" / "bin" / "python"


def announce(message: str) -> None:
    print(f"  {message} ...", file=sys.stderr, flush=True)


def run(step: str, command: list[str], cwd: Path, rerun: str) -> None:
    """Run one step's command; on failure raise StepError naming the step."""
    announce(step)
    completed = subprocess.run(
        command,
        check=False,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if completed.returncode != 0:
        output = completed.stdout.strip().splitlines()
        last_line = output[-1] if output else f"exit status {completed.returncode}"
        last_line = last_line.removeprefix("error: ")
        raise StepError(f"{step} failed: {last_line}\n  {rerun}")


def run_manage(step: str, arguments: list[str], backend_dir: Path, rerun: str) -> None:
    """Run one of the new project's code-writing manage.py commands in this process.

    create-model and create-crud need only the standard library, and running
    them here saves starting an interpreter for each.
    """
    announce(step)
    sys.path.insert(0, str(backend_dir))
    try:
        from management.cli import main as manage

        errors = io.StringIO()
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(errors),
        ):
            exit_code = manage(arguments)
    finally:
        sys.path.remove(str(backend_dir))
    if exit_code != 0:
        output = errors.getvalue().strip().splitlines()
        last_line = output[-1] if output else f"exit status {exit_code}"
        raise StepError(
            f"{step} failed: {last_line.removeprefix('error: ')}\n  {rerun}"
        )


def write_models(backend_dir: Path, models_json: str) -> None:
    try:
        models = json.loads(models_json)
    except json.JSONDecodeError as error:
        raise StepError(f"the models answer is not valid JSON: {error}") from None
    if not models:
        return
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", delete=False, encoding="utf-8"
    ) as spec_file:
        json.dump(models, spec_file)
    try:
        run_manage(
            "Writing models",
            ["create-model", "--spec", spec_file.name],
            backend_dir,
            "Fix the models answer and run copier copy again.",
        )
    finally:
        os.unlink(spec_file.name)
    run_manage(
        "Writing routers and tests",
        ["create-crud", "--all"],
        backend_dir,
        "To run this step again: cd backend && python manage.py create-crud --all",
    )


def install_dependencies(backend_dir: Path) -> Path:
    """Create backend/.venv and install the dependencies, with uv when available."""
    python = venv_python(backend_dir)
    uv = shutil.which("uv")
    rerun = (
        "To run this step again: cd backend && python3 -m venv .venv "
        "&& .venv/bin/pip install -r requirements-dev.txt"
    )
    if uv:
        run(
            "Creating backend/.venv with uv",
            [uv, "venv", "--quiet", "--python", sys.executable, ".venv"],
            backend_dir,
            rerun,
        )
        run(
            "Installing dependencies with uv",
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--python",
                str(python),
                "-r",
                "requirements-dev.txt",
            ],
            backend_dir,
            rerun,
        )
    else:
        run(
            "Creating backend/.venv",
            [sys.executable, "-m", "venv", ".venv"],
            backend_dir,
            rerun,
        )
        run(
            "Installing dependencies with pip",
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                "requirements-dev.txt",
            ],
            backend_dir,
            rerun,
        )
    return python


def write_initial_config(
    project_dir: Path, tier: str, project_slug: str, template_version: str
) -> None:
    """Start db_config.json with the values only Copier has; ``manage.py init`` adds the rest."""
    config_file = project_dir / "db_config.json"
    if config_file.exists():
        return
    config = {
        "project": project_slug,
        "tier": tier,
        "template_version": template_version,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }
    config_file.write_text(
        json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    project_dir = Path.cwd()
    backend_dir = project_dir / "backend"
    env_file = backend_dir / ".env"
    try:
        write_models(backend_dir, args.models_json)
        if args.admin_page:
            add_admin_secrets(env_file)
        if env_file.exists():
            env_file.chmod(0o600)
        write_initial_config(
            project_dir, args.tier, args.project_slug, args.template_version
        )
        provision = args.tier != "sqlite" and not args.existing_database
        seed_option = " --seed-sample" if args.seed_sample else ""
        steps = [f".venv/bin/python manage.py init{seed_option}"]
        if provision:
            steps.insert(0, f".venv/bin/python manage.py provision --tier {args.tier}")
        if not args.install:
            print(
                "  Skipped installing dependencies and creating the database; run:\n"
                "    cd backend && python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt\n"
                + "".join(f"    {step}\n" for step in steps),
                file=sys.stderr,
                end="",
            )
            return 0
        python = install_dependencies(backend_dir)
        if provision:
            run(
                f"Provisioning the project's PostgreSQL {'schema' if args.tier == 'postgres_schema' else 'database'}",
                [str(python), "manage.py", "provision", "--tier", args.tier],
                backend_dir,
                f"To run this step again: cd backend && {steps[0]}",
            )
        init_command = [str(python), "manage.py", "init"]
        if args.seed_sample:
            init_command.append("--seed-sample")
        try:
            run(
                "Creating the database and applying the first migration",
                init_command,
                backend_dir,
                f"To run this step again: cd backend && {steps[-1]}",
            )
        except StepError:
            if provision:
                # Copier deletes the new project folder after a failed task,
                # so the role and schema provisioned for it go too.
                run(
                    "Removing what was provisioned",
                    [str(python), "manage.py", "deprovision", "--yes"],
                    backend_dir,
                    "Remove the role and its schema or database by hand.",
                )
            raise
    except StepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("  Done.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
