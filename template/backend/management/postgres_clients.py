"""Run PostgreSQL's client programs (pg_dump, pg_restore, psql) as the project's role."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import sqlalchemy as sa

from management.errors import ManagementError

# Debian keeps PostgreSQL's client programs here when they are not on PATH.
POSTGRES_LIB_DIR = Path("/usr/lib/postgresql")


def client_program(name: str) -> str:
    """Return the path of a PostgreSQL client program such as pg_dump."""
    found = shutil.which(name)
    if found:
        return found
    versions = []
    for candidate in POSTGRES_LIB_DIR.glob(f"*/bin/{name}"):
        version = candidate.parent.parent.name.split(".")[0]
        if version.isdigit():
            versions.append((int(version), candidate))
    if versions:
        return str(max(versions)[1])
    raise ManagementError(
        f"{name} is not installed; install PostgreSQL's client programs "
        "(on Debian: apt-get install postgresql-client) and run the command again "
        "(nothing was changed)"
    )


def run_client(
    name: str,
    arguments: list[str],
    *,
    url: sa.URL | None = None,
    input_text: str | None = None,
) -> str:
    """Run ``name`` and return its standard output; connect to ``url`` if given.

    The password travels in PGPASSWORD, never on the command line, where other
    users of the machine could read it.
    """
    command = [client_program(name), *arguments]
    environment = dict(os.environ)
    if url is not None:
        for option, value in (
            ("--host", url.host),
            ("--port", url.port),
            ("--username", url.username),
            ("--dbname", url.database),
        ):
            if value is not None:
                command += [option, str(value)]
        environment["PGPASSWORD"] = url.password or ""
    completed = subprocess.run(
        command,
        env=environment,
        input=input_text,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        detail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise ManagementError(f"{name} failed: {detail}")
    return completed.stdout


def dump_schema(url: sa.URL, schema: str, destination: Path, *, archive: bool) -> None:
    """Write ``schema``'s tables and rows to ``destination`` with pg_dump.

    An archive (pg_dump's custom format) is what ``pg_restore`` reads;
    otherwise the dump is plain SQL for ``psql``. Owners and privileges are
    left out, so the dump restores under any role.
    """
    arguments = ["--schema", schema, "--no-owner", "--no-privileges"]
    if archive:
        arguments += ["--format", "custom"]
    run_client("pg_dump", [*arguments, "--file", str(destination)], url=url)
