"""Benchmark tier 2 at scale: many projects as roles and schemas on one PostgreSQL server.

The script starts a throwaway PostgreSQL server (``tests/postgres_server.py``)
on 127.0.0.1 and then:

1. provisions ``--projects`` tier-2 projects one after another with the
   template's own ``management.provisioning.provision``, each followed by one
   ``CREATE TABLE`` that the project's role runs through its own URL. A sample
   of the projects also gets a real ``alembic upgrade head`` of a rendered
   project's first migration. Every project is then checked for isolation:
   its table is in its own schema, ``SHOW search_path`` names that schema, and
   reading a neighbour's table is rejected with "permission denied";
2. runs a short workload on ``--workload-projects`` projects at once, one
   thread and one engine per project, built like the template's
   ``database.py``. It samples ``pg_stat_activity`` every second, then has
   every project check out its whole pool at once to show what the worst case
   does to ``max_connections``;
3. deprovisions every project with ``management.provisioning.deprovision``.

Run from the repository root (about 2 minutes on 2 cores; each phase has a
time budget or a deadline):

    .venv/bin/python bench/scale.py

The benchmark prints figures; it checks no timing. It exits with status 1
when a sampled migration, an isolation check or a deprovisioning fails.
"""

from __future__ import annotations

import argparse
import ast
import collections
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import sqlalchemy
from psycopg import sql
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from support import (
    REPO_DIR,
    clean_env,
    create_venv,
    describe_load,
    describe_machine,
    describe_revision,
    median,
    percentile,
    put_uv_on_path,
    render_project,
    snapshot_template,
)

from tests.postgres_server import PostgresServer

BACKEND_DIR = REPO_DIR / "template" / "backend"
# Appended, not prepended: template/backend has a tests package of its own.
sys.path.append(str(BACKEND_DIR))

from management import provisioning  # noqa: E402

TIER = "postgres_schema"
SLUG_PREFIX = "scale-"
TABLE = "bench_items"
CREATE_TABLE = f"""
CREATE TABLE {TABLE} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name varchar(100) NOT NULL,
    value integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT_ITEM = text(
    f"INSERT INTO {TABLE} (name, value) VALUES (:name, :value) RETURNING id"
)
SELECT_ITEM = text(f"SELECT name, value FROM {TABLE} WHERE id = :id")
QUERIES_PER_ITERATION = 2
# More than psycopg's default prepare_threshold of 5.
PREPARED_CHECK_STATEMENTS = 10

CONNECT_TIMEOUT_SECONDS = 10
SAMPLE_INTERVAL_SECONDS = 1.0
# Caps that stop every loop even if its deadline were never reached.
MAX_SAMPLES = 3600
MAX_ITERATIONS_PER_PROJECT = 20_000
MAX_ERRORS_PER_PROJECT = 50
ERROR_PAUSE_SECONDS = 0.1
BARRIER_TIMEOUT_SECONDS = 180.0
THREAD_JOIN_GRACE_SECONDS = 60.0
ALEMBIC_TIMEOUT_SECONDS = 120.0
ALEMBIC_BUDGET_SECONDS = 180.0
# Two uvicorn workers per project, as provisioning.CONNECTION_LIMIT assumes.
WORKERS_PER_PROJECT = 2
# Server sizes for which the printed arithmetic shows how many projects fit.
EXAMPLE_MAX_CONNECTIONS = (100, 300, 1000)


def read_pool_settings() -> tuple[int, int]:
    """Return database.py's PostgreSQL pool size and overflow without importing it.

    Importing database.py builds an engine from DATABASE_URL, so the module's
    constants are read from its source instead.
    """
    tree = ast.parse((BACKEND_DIR / "database.py").read_text(encoding="utf-8"))
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = node.value.value
    return values["POSTGRES_POOL_SIZE"], values["POSTGRES_MAX_OVERFLOW"]


def libpq_url(url: str) -> str:
    """Turn a SQLAlchemy ``postgresql+psycopg://`` URL into one that libpq accepts."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def server_message(error: BaseException) -> str:
    """Return the server's or driver's message of a failed query or connection, on one line."""
    original = getattr(error, "orig", None) or error
    message = " ".join(str(original).split())
    match = re.search(r"(FATAL|ERROR):\s*(.*)", message)
    return match.group(2) if match else f"{type(original).__name__}: {message}"


@dataclass
class Project:
    """A provisioned project: the details db_config.json would record, and its URL."""

    slug: str
    details: dict[str, object]
    url: str = field(repr=False)

    @property
    def schema(self) -> str:
        return str(self.details["schema"])


def describe_durations(values: list[float]) -> str:
    if not values:
        return "none measured"
    return (
        f"median {median(values) * 1000:.0f} ms, p95 {percentile(values, 0.95) * 1000:.0f} ms, "
        f"max {max(values) * 1000:.0f} ms (n={len(values)})"
    )


def provision_projects(
    count: int, budget_seconds: float
) -> tuple[list[Project], list[float], list[float]]:
    """Provision ``count`` projects and create the table in each, one after another.

    Return the projects, the seconds of provision() alone, and the seconds of
    provision() plus CREATE TABLE. Stops early when ``budget_seconds`` have passed.
    """
    projects: list[Project] = []
    provision_times: list[float] = []
    total_times: list[float] = []
    started = time.monotonic()
    for number in range(count):
        if time.monotonic() - started > budget_seconds:
            print(
                f"  stopped after {number} projects: provisioning took longer than "
                f"the {budget_seconds:.0f} s budget"
            )
            break
        slug = f"{SLUG_PREFIX}{number:03d}"
        begin = time.perf_counter()
        provisioned = provisioning.provision(TIER, slug)
        provisioned_at = time.perf_counter()
        with psycopg.connect(
            libpq_url(provisioned.url),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        ) as connection:
            connection.execute(CREATE_TABLE)
        done = time.perf_counter()
        projects.append(Project(slug, provisioned.public_details(), provisioned.url))
        provision_times.append(provisioned_at - begin)
        total_times.append(done - begin)
        if (number + 1) % 100 == 0:
            print(
                f"  {number + 1} projects provisioned after {time.monotonic() - started:.0f} s"
            )
    return projects, provision_times, total_times


@dataclass
class AlembicSample:
    """Real ``alembic upgrade head`` runs on a sample of the provisioned projects."""

    versions: str = ""
    head: str = ""
    expected_tables: set[str] = field(default_factory=set)
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def run_alembic_sample(projects: list[Project], size: int, work: Path) -> AlembicSample:
    """Render one project and migrate ``size`` provisioned schemas with its first migration.

    The project is rendered on SQLite with the default models and initialized
    by ``manage.py init``, which writes the first migration. Each sampled
    schema is then migrated by ``alembic upgrade head`` in a new process with
    that schema's DATABASE_URL exported, which wins over backend/.env.
    """
    result = AlembicSample()
    template = snapshot_template(work / "aicoder-template")
    python = create_venv(work / "venv")
    project = render_project(template, work / "project", {}, python, seed=False)
    backend = project / "backend"
    result.versions = subprocess.run(
        [
            str(python),
            "-c",
            "import alembic, sqlalchemy, psycopg; "
            "print(f'Alembic {alembic.__version__}, SQLAlchemy {sqlalchemy.__version__}, "
            "psycopg {psycopg.__version__}')",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    heads = subprocess.run(
        [str(python), "-m", "alembic", "heads"],
        cwd=backend,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    result.head = heads[0] if heads else ""
    with sqlite3.connect(backend / "database.sqlite") as database:
        result.expected_tables = {
            row[0]
            for row in database.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        } | {TABLE}

    step = max(1, len(projects) // size)
    started = time.monotonic()
    for target in projects[::step][:size]:
        if time.monotonic() - started > ALEMBIC_BUDGET_SECONDS:
            result.failures.append(
                f"stopped after {len(result.seconds)} runs: the migrations took longer "
                f"than the {ALEMBIC_BUDGET_SECONDS:.0f} s budget"
            )
            break
        begin = time.perf_counter()
        completed = subprocess.run(
            [str(python), "-m", "alembic", "upgrade", "head"],
            cwd=backend,
            env=clean_env(DATABASE_URL=target.url),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=ALEMBIC_TIMEOUT_SECONDS,
        )
        result.seconds.append(time.perf_counter() - begin)
        if completed.returncode != 0:
            result.failures.append(
                f"{target.slug}: alembic upgrade head failed: {completed.stderr.strip()[-500:]}"
            )
            continue
        with psycopg.connect(
            libpq_url(target.url),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        ) as connection:
            tables = {
                row[0]
                for row in connection.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                )
            }
            version = connection.execute(
                "SELECT version_num FROM alembic_version"
            ).fetchall()
        if tables != result.expected_tables:
            result.failures.append(
                f"{target.slug}: tables {sorted(tables)}, expected {sorted(result.expected_tables)}"
            )
        if version != [(result.head,)]:
            result.failures.append(
                f"{target.slug}: alembic_version {version}, expected {result.head}"
            )
    return result


def check_isolation(projects: list[Project]) -> tuple[list[str], int]:
    """Check every project's table, search_path, and that a neighbour's table is off limits.

    Return the failures and the number of neighbour reads that the server
    rejected with "permission denied".
    """
    failures: list[str] = []
    denied = 0
    for number, project in enumerate(projects):
        neighbour = projects[(number + 1) % len(projects)]
        try:
            with psycopg.connect(
                libpq_url(project.url),
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
            ) as connection:
                search_path = connection.execute("SHOW search_path").fetchone()[0]
                if search_path != project.schema:
                    failures.append(
                        f"{project.slug}: search_path is {search_path!r}, expected {project.schema!r}"
                    )
                schemas = [
                    row[0]
                    for row in connection.execute(
                        "SELECT table_schema FROM information_schema.tables WHERE table_name = %s",
                        (TABLE,),
                    )
                ]
                if schemas != [project.schema]:
                    failures.append(
                        f"{project.slug}: sees {TABLE} in schemas {schemas}, expected [{project.schema!r}]"
                    )
                if neighbour is project:
                    continue
                try:
                    connection.execute(
                        sql.SQL("SELECT count(*) FROM {}.{}").format(
                            sql.Identifier(neighbour.schema), sql.Identifier(TABLE)
                        )
                    )
                    failures.append(
                        f"{project.slug}: could read {neighbour.schema}.{TABLE}"
                    )
                except psycopg.errors.InsufficientPrivilege:
                    denied += 1
        except psycopg.Error as error:
            failures.append(f"{project.slug}: {server_message(error)}")
    return failures, denied


def count_visible_schemas(project: Project) -> int:
    """Count the benchmark's schemas whose names ``project``'s role can list in pg_namespace."""
    pattern = SLUG_PREFIX.replace("-", "_") + "%"
    with psycopg.connect(
        libpq_url(project.url), autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
    ) as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", (pattern,)
        ).fetchone()[0]


class ActivitySampler:
    """Count the server's connections every second in a thread, until stopped."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.samples: list[tuple[int, int, int]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="activity-sampler", daemon=True
        )

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=CONNECT_TIMEOUT_SECONDS + 5)

    def _run(self) -> None:
        try:
            with psycopg.connect(
                self.admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            ) as connection:
                for _ in range(MAX_SAMPLES):
                    total, clients = connection.execute(
                        "SELECT count(*), count(*) FILTER (WHERE backend_type = 'client backend') "
                        "FROM pg_stat_activity"
                    ).fetchone()
                    limit = int(
                        connection.execute("SHOW max_connections").fetchone()[0]
                    )
                    self.samples.append((total, clients, limit))
                    if self._stop.wait(SAMPLE_INTERVAL_SECONDS):
                        return
        except psycopg.Error as error:
            self.errors.append(server_message(error))

    def peak(self) -> tuple[int, int, int]:
        """Return the highest total and client-backend counts, and the max_connections sampled."""
        if not self.samples:
            return 0, 0, 0
        return (
            max(sample[0] for sample in self.samples),
            max(sample[1] for sample in self.samples),
            max(sample[2] for sample in self.samples),
        )


def build_engine(url: str, pool_size: int, max_overflow: int) -> Engine:
    """Build an engine the way the template's database.py does on PostgreSQL."""
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


@dataclass
class WorkloadResult:
    """Counts, latencies and errors of the workload threads, merged after they stopped."""

    seconds: float = 0.0
    iterations: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: collections.Counter = field(default_factory=collections.Counter)
    connect_seconds: float = 0.0
    unfinished_threads: int = 0


def run_workload(
    engines: list[tuple[Project, Engine]], seconds: float
) -> WorkloadResult:
    """Let every project insert and read its own rows at once for ``seconds``.

    Each thread opens its first connection before the common start, so the
    measured window contains queries only. An iteration is one INSERT in its own
    transaction, then one SELECT of that row on a new checkout.
    """
    result = WorkloadResult()
    lock = threading.Lock()
    window: dict[str, float] = {}

    def start_window() -> None:
        window["start"] = time.monotonic()
        window["deadline"] = window["start"] + seconds

    barrier = threading.Barrier(len(engines) + 1, action=start_window)

    def work(project: Project, engine: Engine) -> None:
        latencies: list[float] = []
        errors: collections.Counter = collections.Counter()
        ready = True
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            errors[f"first connection: {server_message(error)}"] += 1
            ready = False
        try:
            barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
        except threading.BrokenBarrierError:
            errors["start barrier broken"] += 1
            ready = False
        iterations = 0
        while (
            ready
            and iterations < MAX_ITERATIONS_PER_PROJECT
            and time.monotonic() < window["deadline"]
        ):
            if sum(errors.values()) >= MAX_ERRORS_PER_PROJECT:
                break
            iterations += 1
            begin = time.perf_counter()
            try:
                with engine.begin() as connection:
                    row_id = connection.execute(
                        INSERT_ITEM,
                        {"name": f"{project.slug}-{iterations}", "value": iterations},
                    ).scalar_one()
                with engine.connect() as connection:
                    connection.execute(SELECT_ITEM, {"id": row_id}).one()
                latencies.append(time.perf_counter() - begin)
            except SQLAlchemyError as error:
                errors[server_message(error)] += 1
                time.sleep(ERROR_PAUSE_SECONDS)
        with lock:
            result.latencies.extend(latencies)
            result.iterations += len(latencies)
            result.errors.update(errors)

    threads = [
        threading.Thread(
            target=work,
            args=(project, engine),
            name=f"workload-{project.slug}",
            daemon=True,
        )
        for project, engine in engines
    ]
    connect_started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
    except threading.BrokenBarrierError:
        result.errors["start barrier broken"] += 1
        window.setdefault("start", time.monotonic())
    result.connect_seconds = window["start"] - connect_started
    join_deadline = window["start"] + seconds + THREAD_JOIN_GRACE_SECONDS
    for thread in threads:
        thread.join(timeout=max(0.0, join_deadline - time.monotonic()))
    result.unfinished_threads = sum(thread.is_alive() for thread in threads)
    result.seconds = time.monotonic() - window["start"]
    return result


@dataclass
class BurstResult:
    """Connections opened and rejected when every project checked out its whole pool."""

    requested: int = 0
    opened: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0


def run_pool_burst(
    engines: list[tuple[Project, Engine]], per_project: int, hold_seconds: float
) -> BurstResult:
    """Have every project check out ``per_project`` connections at once.

    This is the worst case of database.py's pool: every connection that every
    project's pool may open is checked out at the same moment. Each thread
    keeps its connections checked out until all threads have tried, then for
    ``hold_seconds`` more, so the sampler sees the peak.
    """
    result = BurstResult(requested=len(engines) * per_project)
    lock = threading.Lock()
    start = threading.Barrier(len(engines))
    tried = threading.Barrier(len(engines))

    def burst(engine: Engine) -> None:
        checked_out = []
        rejected: collections.Counter = collections.Counter()
        try:
            start.wait(timeout=BARRIER_TIMEOUT_SECONDS)
            for _ in range(per_project):
                try:
                    checked_out.append(engine.connect())
                except SQLAlchemyError as error:
                    rejected[server_message(error)] += 1
            tried.wait(timeout=BARRIER_TIMEOUT_SECONDS)
            time.sleep(hold_seconds)
        except threading.BrokenBarrierError:
            rejected["barrier broken"] += 1
        finally:
            for connection in checked_out:
                connection.close()
        with lock:
            result.opened += len(checked_out)
            result.rejected.update(rejected)

    threads = [
        threading.Thread(
            target=burst, args=(engine,), name=f"burst-{project.slug}", daemon=True
        )
        for project, engine in engines
    ]
    begin = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * BARRIER_TIMEOUT_SECONDS + hold_seconds)
    result.seconds = time.monotonic() - begin
    return result


def count_prepared_statements(engine: Engine, statements: int) -> tuple[int, int]:
    """Count the server-side prepared statements of one pooled session, before and after writes.

    psycopg prepares a statement on the server once a connection has run it
    more than ``prepare_threshold`` times (5 by default), and drops them all
    on ROLLBACK. Return the count after the workload, and after ``statements``
    INSERTs, each committed, on one checkout.
    """
    count = text("SELECT count(*) FROM pg_prepared_statements")
    with engine.connect() as connection:
        after_workload = connection.execute(count).scalar_one()
        for number in range(statements):
            connection.execute(
                INSERT_ITEM, {"name": f"prepared-{number}", "value": number}
            )
            connection.commit()
        after_commits = connection.execute(count).scalar_one()
    return after_workload, after_commits


def check_role_limit(project: Project, limit: int) -> tuple[int, str]:
    """Open ``limit + 1`` connections as the project's role; return how many opened and the rejection."""
    connections = []
    rejection = ""
    try:
        for _ in range(limit + 1):
            try:
                connections.append(
                    psycopg.connect(
                        libpq_url(project.url),
                        autocommit=True,
                        connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    )
                )
            except psycopg.OperationalError as error:
                rejection = server_message(error)
                break
    finally:
        for connection in connections:
            connection.close()
    return len(connections), rejection


def deprovision_projects(
    projects: list[Project], budget_seconds: float
) -> tuple[list[float], list[str]]:
    """Deprovision every project; return the seconds of each and the failures."""
    times: list[float] = []
    failures: list[str] = []
    started = time.monotonic()
    for project in projects:
        if time.monotonic() - started > budget_seconds:
            failures.append(
                f"stopped after {len(times)} projects: deprovisioning took longer than "
                f"the {budget_seconds:.0f} s budget; the server's removal drops the rest"
            )
            break
        begin = time.perf_counter()
        try:
            provisioning.deprovision(project.details)
        except Exception as error:  # noqa: BLE001 - count it and go on with the rest
            failures.append(f"{project.slug}: {error}")
        times.append(time.perf_counter() - begin)
    return times, failures


def leftovers(admin_url: str, database: str) -> tuple[int, int]:
    """Count the benchmark's roles and schemas still on the server."""
    pattern = SLUG_PREFIX.replace("-", "_") + "%"
    with psycopg.connect(
        admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
    ) as admin:
        roles = admin.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", (pattern,)
        ).fetchone()[0]
    with psycopg.connect(
        admin_url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        dbname=database,
    ) as inside:
        schemas = inside.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", (pattern,)
        ).fetchone()[0]
    return roles, schemas


def print_pool_arithmetic(
    projects: int,
    pool_size: int,
    max_overflow: int,
    max_connections: int,
    reserved: int,
) -> None:
    per_process = pool_size + max_overflow
    per_project = min(WORKERS_PER_PROJECT * per_process, provisioning.CONNECTION_LIMIT)
    available = max_connections - reserved
    print("pool arithmetic:")
    print(
        f"  database.py pool per process: {pool_size} + {max_overflow} overflow = {per_process} connections"
    )
    print(
        f"  worst case, {projects} projects x 1 process x {per_process} = "
        f"{projects * per_process} connections"
    )
    print(
        f"  worst case, {projects} projects x {WORKERS_PER_PROJECT} workers x {per_process}, "
        f"capped by the role limit of {provisioning.CONNECTION_LIMIT} = "
        f"{projects * per_project} connections"
    )
    print(
        f"  this server: max_connections {max_connections} - {reserved} superuser_reserved_connections "
        f"= {available} for project roles, enough for "
        f"{available / (projects * per_process):.0%} of the 1-process worst case"
    )
    for example in sorted({*EXAMPLE_MAX_CONNECTIONS, max_connections}):
        free = example - reserved
        print(
            f"  max_connections {example}: {free // per_process} projects fit at 1 process each, "
            f"{free // per_project} at {WORKERS_PER_PROJECT} workers (role limit)"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--projects", type=int, default=500, help="projects to provision (default 500)"
    )
    parser.add_argument(
        "--workload-projects",
        type=int,
        default=200,
        help="projects that run the workload at once, one thread each (default 200)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="length of the workload in seconds (default 20)",
    )
    parser.add_argument(
        "--alembic-sample",
        type=int,
        default=20,
        help="projects migrated by a real alembic upgrade head; 0 skips rendering a project (default 20)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=300,
        help="max_connections of the test server; must exceed --workload-projects plus a few (default 300)",
    )
    parser.add_argument(
        "--burst-hold-seconds",
        type=float,
        default=3.0,
        help="seconds each project keeps its whole pool checked out in the burst (default 3)",
    )
    parser.add_argument(
        "--provision-budget-seconds",
        type=float,
        default=360.0,
        help="stop provisioning new projects after this many seconds (default 360)",
    )
    parser.add_argument(
        "--deprovision-budget-seconds",
        type=float,
        default=300.0,
        help="stop deprovisioning after this many seconds (default 300)",
    )
    args = parser.parse_args()

    if not 2 <= args.projects <= 1000:
        parser.error(f"--projects must be between 2 and 1000, got {args.projects}")
    if not 1 <= args.workload_projects <= args.projects:
        parser.error(
            f"--workload-projects must be between 1 and --projects ({args.projects}), got {args.workload_projects}"
        )
    if not 0 < args.seconds <= 120:
        parser.error(f"--seconds must be above 0 and at most 120, got {args.seconds}")
    if not 0 <= args.alembic_sample <= args.projects:
        parser.error(
            f"--alembic-sample must be between 0 and --projects ({args.projects}), got {args.alembic_sample}"
        )
    if args.max_connections < args.workload_projects + 10:
        parser.error(
            f"--max-connections {args.max_connections} leaves no room for {args.workload_projects} "
            "workload connections plus the sampler and the superuser reserve; raise it"
        )
    if not 0 <= args.burst_hold_seconds <= 30:
        parser.error(
            f"--burst-hold-seconds must be between 0 and 30, got {args.burst_hold_seconds}"
        )
    return args


def provision_phase(args: argparse.Namespace) -> tuple[list[Project], bool]:
    """Provision the projects, migrate a sample with Alembic and check isolation.

    Return the projects and whether a check failed.
    """
    print(
        f"\n1. provisioning {args.projects} tier-2 projects, each followed by "
        f"CREATE TABLE {TABLE} as its role"
    )
    projects, provision_times, total_times = provision_projects(
        args.projects, args.provision_budget_seconds
    )
    print(f"  provision() alone:          {describe_durations(provision_times)}")
    print(f"  provision() + CREATE TABLE: {describe_durations(total_times)}")
    if len(total_times) >= 100:
        print(
            f"  median of the first 50: {median(total_times[:50]) * 1000:.0f} ms, "
            f"of the last 50: {median(total_times[-50:]) * 1000:.0f} ms"
        )
    print(f"  total {sum(total_times):.1f} s for {len(projects)} projects")
    failed = False

    if args.alembic_sample:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as temp:
            sample = run_alembic_sample(projects, args.alembic_sample, Path(temp))
        print(
            f"  alembic upgrade head ({sample.versions}), head {sample.head}, "
            f"tables {sorted(sample.expected_tables)}:"
        )
        print(
            f"    {describe_durations(sample.seconds)}, failures: {len(sample.failures)}"
        )
        for failure in sample.failures[:10]:
            print(f"    {failure}")
        failed |= bool(sample.failures)

    isolation_started = time.monotonic()
    failures, denied = check_isolation(projects)
    print(
        f"  isolation of {len(projects)} projects "
        f"({time.monotonic() - isolation_started:.1f} s): failures {len(failures)}; "
        f"neighbour reads rejected with permission denied: {denied} of {len(projects)}"
    )
    for failure in failures[:10]:
        print(f"    {failure}")
    failed |= bool(failures)
    print(
        f"  catalog: {projects[0].slug}'s role can list "
        f"{count_visible_schemas(projects[0])} of the {len(projects)} project schema "
        "names in pg_namespace"
    )
    return projects, failed


def print_activity(sampler: ActivitySampler) -> None:
    peak_total, peak_clients, sampled_limit = sampler.peak()
    print(
        f"  peak connections in pg_stat_activity: {peak_total} (client backends "
        f"{peak_clients}) of max_connections {sampled_limit}, "
        f"{len(sampler.samples)} samples"
    )
    for message in sampler.errors:
        print(f"    sampler: {message}")


def workload_phase(
    projects: list[Project],
    args: argparse.Namespace,
    admin_url: str,
    pool_size: int,
    max_overflow: int,
) -> None:
    """Run the workload and the pool burst on the first ``--workload-projects`` projects."""
    print(
        f"\n2. workload: {len(projects)} projects at once for {args.seconds:.0f} s, "
        f"one thread and one engine (pool {pool_size} + {max_overflow}, pre-ping) "
        "per project"
    )
    engines = [
        (project, build_engine(project.url, pool_size, max_overflow))
        for project in projects
    ]
    try:
        with ActivitySampler(admin_url) as sampler:
            workload = run_workload(engines, args.seconds)
        queries = workload.iterations * QUERIES_PER_ITERATION
        print(f"  all first connections open after {workload.connect_seconds:.1f} s")
        print(
            f"  {queries} queries in {workload.seconds:.1f} s = "
            f"{queries / workload.seconds:.0f} queries/s "
            f"({workload.iterations / workload.seconds:.0f} insert+select iterations/s), "
            f"iteration p50 {percentile(workload.latencies, 0.5) * 1000:.0f} ms, "
            f"p99 {percentile(workload.latencies, 0.99) * 1000:.0f} ms"
        )
        print_activity(sampler)
        print(
            f"  errors: {sum(workload.errors.values())}; threads still running at the "
            f"join deadline: {workload.unfinished_threads}"
        )
        for message, count in workload.errors.most_common(5):
            print(f"    {count} x {message}")
        after_workload, after_commits = count_prepared_statements(
            engines[0][1], PREPARED_CHECK_STATEMENTS
        )
        print(
            "  server-side prepared statements in one pooled session: "
            f"{after_workload} after the workload, {after_commits} after "
            f"{PREPARED_CHECK_STATEMENTS} committed INSERTs on one checkout"
        )

        per_project = pool_size + max_overflow
        print(
            f"\n  burst: every one of the {len(engines)} projects checks out its whole "
            f"pool ({per_project} connections) at once"
        )
        with ActivitySampler(admin_url) as sampler:
            burst = run_pool_burst(engines, per_project, args.burst_hold_seconds)
        print(
            f"  requested {burst.requested}, opened {burst.opened}, rejected "
            f"{sum(burst.rejected.values())}, in {burst.seconds:.1f} s"
        )
        print_activity(sampler)
        for message, count in burst.rejected.most_common(5):
            print(f"    {count} x {message}")
    finally:
        for _, engine in engines:
            engine.dispose()

    opened, rejection = check_role_limit(projects[0], provisioning.CONNECTION_LIMIT)
    print(
        f"  role CONNECTION LIMIT {provisioning.CONNECTION_LIMIT}: {projects[0].slug} "
        f"opened {opened} of {provisioning.CONNECTION_LIMIT + 1} connections; "
        f"rejection: {rejection or 'none'}"
    )


def deprovision_phase(
    projects: list[Project], admin_url: str, budget_seconds: float
) -> bool:
    """Deprovision every project and count what is left; return whether that failed."""
    print(f"\n3. deprovisioning {len(projects)} projects")
    times, failures = deprovision_projects(projects, budget_seconds)
    roles_left, schemas_left = leftovers(
        admin_url, str(projects[0].details["database"])
    )
    print(f"  total {sum(times):.1f} s; per project {describe_durations(times)}")
    print(
        f"  failures: {len(failures)}; roles left: {roles_left}, "
        f"schemas left: {schemas_left}"
    )
    for failure in failures[:10]:
        print(f"    {failure}")
    return bool(failures) or bool(roles_left) or bool(schemas_left)


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    started = time.monotonic()
    put_uv_on_path()
    pool_size, max_overflow = read_pool_settings()
    print(f"machine: {describe_machine()}; {describe_load()}")
    print(f"template: {describe_revision()}")
    print(
        f"benchmark: SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}"
    )

    with PostgresServer(max_connections=args.max_connections) as server:
        admin_url = libpq_url(server.admin_url)
        # provision() and deprovision() read the administrator's URL from the
        # environment; the Alembic subprocesses get clean_env() without it.
        os.environ[provisioning.ADMIN_URL_VARIABLE] = server.admin_url
        os.environ.pop(provisioning.SHARED_DATABASE_VARIABLE, None)
        try:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                version = admin.execute("SHOW server_version").fetchone()[0]
                reserved = int(
                    admin.execute("SHOW superuser_reserved_connections").fetchone()[0]
                )
            print(
                f"server: PostgreSQL {version} on 127.0.0.1, max_connections "
                f"{args.max_connections}, superuser_reserved_connections {reserved}, "
                "fsync and synchronous_commit off"
            )
            projects, failed = provision_phase(args)
            workload_projects = projects[: args.workload_projects]
            workload_phase(workload_projects, args, admin_url, pool_size, max_overflow)
            print()
            print_pool_arithmetic(
                len(workload_projects),
                pool_size,
                max_overflow,
                args.max_connections,
                reserved,
            )
            failed |= deprovision_phase(
                projects, admin_url, args.deprovision_budget_seconds
            )
        finally:
            os.environ.pop(provisioning.ADMIN_URL_VARIABLE, None)

    print(f"\nwhole run: {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
