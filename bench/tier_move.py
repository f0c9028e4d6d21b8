"""Benchmark ``manage.py upgrade`` against pgloader: moving SQLite data to PostgreSQL.

The script starts a throwaway PostgreSQL server (``tests/postgres_server.py``)
on 127.0.0.1 and renders one project with three related models of mixed
types: ``Customer``, ``SalesOrder`` (a ``ref(Customer)``) and ``OrderLine``
(a ``ref(SalesOrder)``). Together they have integer keys and foreign keys,
bounded strings, text, booleans, decimals, floats, dates, UTC datetimes,
enums, JSON and bytes. For each size in ``--rows`` it then:

1. copies the rendered project, whose ``manage.py init`` built the empty
   SQLite schema, and fills the tables directly with ``sqlite3`` (1/10 of the
   rows are customers, 3/10 orders and the rest order lines), with values as
   SQLAlchemy stores them;
2. runs ``manage.py upgrade --to postgres_schema`` with ``ADMIN_DATABASE_URL``
   set. That covers the whole command: preflight, provisioning, ``alembic
   upgrade head``, COPY, sequence reset, ANALYZE, digests and the SQLite backup;
3. runs pgloader, from Debian's package, on a copy of the same SQLite file
   into an empty database on the same server. pgloader creates its own tables;
4. compares the two targets: NOT NULL columns, varchar lengths, column types,
   constraints, and whether each table's next insert without a key gets the
   next id;
5. removes both targets (``manage.py deprovision --yes`` and ``DROP DATABASE``).

Each command runs as a subprocess and is timed from start to exit. Its peak
memory is the largest sum of resident set sizes (RSS) of the process and all
its descendants, sampled from ``/proc`` every 20 ms. The script also prints
the largest RSS of any single process of the tree, which the kernel reports
exactly through ``wait4``. The PostgreSQL server's own memory counts for
neither tool. Rows per second are the rows of all tables divided by the
command's wall time.

Targets: ``upgrade`` moves at least 1.5 times pgloader's rows per second, its
peak memory stays under 100 MB, and that peak grows by at most 15 % from the
smallest to the largest size.

With ``--phases``, one more upgrade per size runs in-process with a timer
around each step of ``management/tier_move.py``, to show where the time goes.

Run from the repository root. As root, the script installs pgloader with
apt-get when it is missing and runs the server as the ``postgres`` OS user.
Any other user must install pgloader first. The default sizes took about
4 minutes on 2 cores, and about 8 with ``--phases``, on a machine that other
work shared:

    .venv/bin/python bench/tier_move.py
    .venv/bin/python bench/tier_move.py --rows 100000 --phases

The benchmark prints figures; it checks no timing. It exits with status 1 when
a command fails, when a target lacks rows, or when pgloader is missing and
cannot be installed.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from support import (
    clean_env,
    create_venv,
    describe_load,
    describe_machine,
    describe_revision,
    put_uv_on_path,
    render_project,
    snapshot_template,
)

from tests.postgres_server import PostgresServer

TIER = "postgres_schema"
PROJECT_SLUG = "tier-move-bench"
# The role and schema name that provisioning derives from PROJECT_SLUG.
PROJECT_SCHEMA = "tier_move_bench"
SHARED_DATABASE = "aicoder_projects"
PGLOADER_DATABASE = "pgloader_target"

MODELS = [
    {
        "name": "Customer",
        "fields": {
            "name": "string(100) required",
            "email": "string(120) required unique",
            "notes": "text",
            "active": "boolean default=true",
            "balance": "decimal(12,2) default=0",
            "score": "float",
            "born_on": "date",
            "joined_at": "datetime default=now",
            "level": "enum(basic,silver,gold) default=basic",
            "preferences": "json",
            "avatar": "bytes",
        },
    },
    {
        "name": "SalesOrder",
        "fields": {
            "customer": "ref(Customer) required",
            "status": "enum(open,paid,shipped,cancelled) default=open",
            "placed_at": "datetime required",
            "total": "decimal(12,2) required",
            "note": "string(200)",
            "gift": "boolean default=false",
            "ships_on": "date",
        },
    },
    {
        "name": "OrderLine",
        "fields": {
            "sales_order": "ref(SalesOrder) required",
            "sku": "string(32) required",
            "description": "text",
            "quantity": "integer required",
            "unit_price": "decimal(10,2) required",
            "discount": "float",
            "taxable": "boolean default=true",
            "attributes": "json",
        },
    },
]
TABLES = ("customer", "sales_order", "order_line")
# pg_constraint.contype values, in the order they are printed.
CONSTRAINT_KINDS = {
    "p": "primary keys",
    "f": "foreign keys",
    "u": "unique constraints",
    "c": "check constraints",
}
# Indexes counted from pg_index, whether or not a constraint owns them.
INDEX_KINDS = ("unique indexes besides the primary key", "other indexes")

TARGET_RATIO = 1.5
TARGET_PEAK_MB = 100.0
# The largest size's peak may exceed the smallest size's by this fraction.
FLAT_TOLERANCE = 0.15
DEFAULT_ROWS = "250000,500000,1000000"
MIN_ROWS = 1000
MAX_ROWS = 5_000_000
FILL_BATCH_ROWS = 10_000
SAMPLE_INTERVAL_SECONDS = 0.02
COMMAND_TIMEOUT_SECONDS = 1800.0
# SQLAlchemy's storage format for DateTime on SQLite, which UTCDateTime uses
# with naive UTC values.
SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
EPOCH = datetime.datetime(2020, 1, 1)
SKU_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def libpq_url(url: str, database: str | None = None) -> str:
    """Turn a SQLAlchemy ``postgresql+psycopg://`` URL into a libpq one, optionally for another database."""
    url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    if database is not None:
        url = url.rsplit("/", 1)[0] + f"/{database}"
    return url


# Filling the SQLite database.


def table_sizes(rows: int) -> dict[str, int]:
    customers = max(1, rows // 10)
    orders = max(1, rows * 3 // 10)
    return {
        "customer": customers,
        "sales_order": orders,
        "order_line": rows - customers - orders,
    }


def customer_rows(count: int, generator: random.Random):
    levels = ("basic", "silver", "gold")
    for key in range(1, count + 1):
        joined = EPOCH + datetime.timedelta(seconds=generator.randrange(10**8))
        optional = key % 7 != 0
        yield (
            key,
            f"Customer {key} Ñandú-Øster",
            f"customer{key}@example.com",
            f"Prefers delivery before noon. Account {key}." if optional else None,
            key % 5 != 0,
            generator.randrange(-(10**7), 10**9) / 100,
            generator.random() * 100 if optional else None,
            (
                datetime.date(1950, 1, 1) + datetime.timedelta(days=key % 20000)
            ).isoformat()
            if optional
            else None,
            joined.strftime(SQLITE_DATETIME_FORMAT),
            levels[key % 3],
            json.dumps({"newsletter": key % 2 == 0, "tags": ["a", f"t{key % 13}"]})
            if optional
            else None,
            generator.randbytes(16 + key % 48) if key % 3 == 0 else None,
        )


def order_rows(count: int, customers: int, generator: random.Random):
    statuses = ("open", "paid", "shipped", "cancelled")
    for key in range(1, count + 1):
        placed = EPOCH + datetime.timedelta(
            seconds=generator.randrange(10**8), microseconds=generator.randrange(10**6)
        )
        yield (
            key,
            generator.randrange(1, customers + 1),
            statuses[key % 4],
            placed.strftime(SQLITE_DATETIME_FORMAT),
            generator.randrange(0, 10**9) / 100,
            f"Leave at the back door, order {key}" if key % 4 == 0 else None,
            key % 9 == 0,
            (placed.date() + datetime.timedelta(days=3)).isoformat()
            if key % 2
            else None,
        )


def order_line_rows(count: int, orders: int, generator: random.Random):
    for key in range(1, count + 1):
        sku = "".join(generator.choices(SKU_LETTERS, k=8)) + f"-{key % 1000:03d}"
        yield (
            key,
            generator.randrange(1, orders + 1),
            sku,
            f"Item {sku}, colour {key % 17}" if key % 3 else None,
            generator.randrange(1, 50),
            generator.randrange(1, 10**7) / 100,
            round(generator.random() / 4, 4) if key % 5 == 0 else None,
            key % 11 != 0,
            json.dumps({"size": key % 5, "gift_wrap": key % 2 == 0})
            if key % 4 == 0
            else None,
        )


def fill_database(database: Path, rows: int) -> dict[str, int]:
    """Insert ``rows`` rows into the three tables in batches; return the count per table."""
    sizes = table_sizes(rows)
    generator = random.Random(rows)
    statements = {
        "customer": (
            "INSERT INTO customer (id, name, email, notes, active, balance, score, "
            "born_on, joined_at, level, preferences, avatar) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            customer_rows(sizes["customer"], generator),
        ),
        "sales_order": (
            "INSERT INTO sales_order (id, customer_id, status, placed_at, total, note, "
            "gift, ships_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            order_rows(sizes["sales_order"], sizes["customer"], generator),
        ),
        "order_line": (
            "INSERT INTO order_line (id, sales_order_id, sku, description, quantity, "
            "unit_price, discount, taxable, attributes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            order_line_rows(sizes["order_line"], sizes["sales_order"], generator),
        ),
    }
    connection = sqlite3.connect(database)
    try:
        for table in TABLES:
            statement, values = statements[table]
            batch: list[tuple] = []
            for row in values:
                batch.append(row)
                if len(batch) == FILL_BATCH_ROWS:
                    connection.executemany(statement, batch)
                    batch.clear()
            if batch:
                connection.executemany(statement, batch)
            connection.commit()
    finally:
        connection.close()
    return sizes


# Running a command and measuring its process tree.


@dataclass
class Measurement:
    """Wall time and memory of one command's process tree."""

    seconds: float
    peak_tree_mb: float
    # Seconds from the start to the sample with the largest tree RSS.
    peak_tree_at: float
    peak_process_mb: float
    returncode: int


def descendants(pid: int) -> list[int]:
    """Return ``pid`` and every process below it, from the ``children`` files in ``/proc``."""
    found = [pid]
    index = 0
    while index < len(found):
        parent = found[index]
        index += 1
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    found.extend(int(child) for child in children.read().split())
            except OSError:
                continue
    return found


def resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def measure(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Measurement:
    """Run ``command``, sample its tree's RSS until it exits, and reap it with ``wait4``."""
    with log.open("w", encoding="utf-8") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        peak_tree = 0
        peak_tree_at = 0.0
        deadline = time.monotonic() + COMMAND_TIMEOUT_SECONDS
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            tree = sum(map(resident_bytes, descendants(process.pid)))
            if tree > peak_tree:
                peak_tree = tree
                peak_tree_at = time.perf_counter() - started
            time.sleep(SAMPLE_INTERVAL_SECONDS)
        elapsed = time.perf_counter() - started
    # wait4 reaped the child, so Popen must not wait for it again.
    process.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux.
    peak_process = usage.ru_maxrss * 1024
    return Measurement(
        elapsed,
        max(peak_tree, peak_process) / 2**20,
        peak_tree_at,
        peak_process / 2**20,
        process.returncode,
    )


def checkpoint(admin_url: str) -> None:
    """Write dirty pages out, so one command's writes do not slow down the next."""
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as admin:
        admin.execute("CHECKPOINT")


def ensure_pgloader() -> str:
    """Return the path of pgloader, installing Debian's package first when root may."""
    found = shutil.which("pgloader")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit(
            "pgloader not found on PATH. Install it as root with "
            "'apt-get install --no-install-recommends pgloader', or run this "
            "script as root and it installs the package itself."
        )
    print("Installing Debian's pgloader package (apt-get update, apt-get install)")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "pgloader"],
    ):
        completed = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=600
        )
        if completed.returncode != 0:
            raise SystemExit(
                f"{' '.join(command)} failed with status {completed.returncode}:\n"
                f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
            )
    found = shutil.which("pgloader")
    if not found:
        raise SystemExit("apt-get installed pgloader, but it is not on PATH")
    return found


def pgloader_version(pgloader: str) -> str:
    """Return pgloader's own version line, plus the package version where dpkg lists one."""
    completed = subprocess.run(
        [pgloader, "--version"], capture_output=True, text=True, timeout=60
    )
    version = " ".join(completed.stdout.split()) or "unknown version"
    if shutil.which("dpkg-query"):
        package = subprocess.run(
            ["dpkg-query", "--show", "--showformat=${Version}", "pgloader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if package.returncode == 0:
            version += f" (Debian package {package.stdout.strip()})"
    return version


# Describing and comparing the two targets.


@dataclass
class ColumnInfo:
    """One column of a target table, from ``information_schema.columns``."""

    data_type: str
    not_null: bool
    max_length: int | None
    precision: int | None
    scale: int | None


@dataclass
class TargetInfo:
    """The tables, columns, row counts and key sequences of one target."""

    columns: dict[str, dict[str, ColumnInfo]] = field(default_factory=dict)
    constraints: collections.Counter[str] = field(default_factory=collections.Counter)
    rows: dict[str, int] = field(default_factory=dict)
    # Per table: None when the next insert gets max(id) + 1, or why not.
    next_id_problem: dict[str, str | None] = field(default_factory=dict)


def describe_target(connection: psycopg.Connection, schema: str) -> TargetInfo:
    """Read each table's columns, row count and key sequence in ``schema``."""
    info = TargetInfo()
    for table in TABLES:
        described = connection.execute(
            "SELECT column_name, data_type, is_nullable, character_maximum_length, "
            "numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()
        if not described:
            continue
        info.columns[table] = {
            name: ColumnInfo(
                data_type,
                nullable == "NO",
                length,
                precision if data_type == "numeric" else None,
                scale if data_type == "numeric" else None,
            )
            for name, data_type, nullable, length, precision, scale in described
        }
        for kind, count in connection.execute(
            "SELECT contype, count(*) FROM pg_constraint "
            "WHERE conrelid = %s::regclass GROUP BY contype",
            (sql.Identifier(schema, table).as_string(connection),),
        ):
            info.constraints[CONSTRAINT_KINDS.get(kind, kind)] += count
        unique, other = connection.execute(
            "SELECT count(*) FILTER (WHERE indisunique AND NOT indisprimary), "
            "count(*) FILTER (WHERE NOT indisunique) FROM pg_index "
            "WHERE indrelid = %s::regclass",
            (sql.Identifier(schema, table).as_string(connection),),
        ).fetchone()
        info.constraints[INDEX_KINDS[0]] += unique
        info.constraints[INDEX_KINDS[1]] += other
        qualified = sql.Identifier(schema, table)
        count, max_id = connection.execute(
            sql.SQL("SELECT count(*), max(id) FROM {}").format(qualified)
        ).fetchone()
        info.rows[table] = count
        info.next_id_problem[table] = next_id_problem(
            connection, schema, table, max_id or 0
        )
    return info


def next_id_problem(
    connection: psycopg.Connection, schema: str, table: str, max_id: int
) -> str | None:
    """Return why an insert without ``id`` would not get ``max_id + 1``, or None.

    Reads the sequence's state without advancing it.
    """
    sequence = connection.execute(
        "SELECT pg_get_serial_sequence(%s, 'id')",
        (sql.Identifier(schema, table).as_string(connection),),
    ).fetchone()[0]
    if sequence is None:
        return "id has no sequence, so an insert without id fails"
    last_value, is_called = connection.execute(
        sql.SQL("SELECT last_value, is_called FROM {}").format(
            sql.SQL(sequence)  # pg_get_serial_sequence returns a quoted name
        )
    ).fetchone()
    next_id = last_value + 1 if is_called else last_value
    if next_id <= max_id:
        return f"next id {next_id} is already taken (max id {max_id})"
    return None


def describe_column(column: ColumnInfo) -> str:
    size = ""
    if column.max_length:
        size = f"({column.max_length})"
    elif column.precision is not None:
        size = f"({column.precision},{column.scale})"
    return f"{column.data_type}{size}{' NOT NULL' if column.not_null else ''}"


def compare_targets(upgrade: TargetInfo, pgloader: TargetInfo) -> None:
    """Print the NOT NULL, length, type and sequence differences of the two targets."""
    for label, info in (("upgrade", upgrade), ("pgloader", pgloader)):
        columns = [
            column for table in info.columns.values() for column in table.values()
        ]
        not_null = sum(column.not_null for column in columns)
        lengths = sum(column.max_length is not None for column in columns)
        next_ok = sum(problem is None for problem in info.next_id_problem.values())
        constraints = ", ".join(
            f"{info.constraints[kind]} {kind}"
            for kind in (*CONSTRAINT_KINDS.values(), *INDEX_KINDS)
        )
        print(
            f"    {label + ':':<9} {len(info.columns)} tables, {len(columns)} columns, "
            f"{not_null} NOT NULL, {lengths} with a varchar length; {constraints}; "
            f"next insert gets the next id in {next_ok} of "
            f"{len(info.next_id_problem)} tables"
        )
    differences = []
    for table, columns in upgrade.columns.items():
        theirs = pgloader.columns.get(table, {})
        for name, column in columns.items():
            other = theirs.get(name)
            if other is None:
                differences.append(
                    f"{table}.{name}: {describe_column(column)} / missing"
                )
            elif other != column:
                differences.append(
                    f"{table}.{name}: {describe_column(column)} / {describe_column(other)}"
                )
    print(f"    columns that differ (upgrade / pgloader): {len(differences)}")
    for line in differences:
        print(f"      {line}")
    for table in TABLES:
        for label, info in (("upgrade", upgrade), ("pgloader", pgloader)):
            problem = info.next_id_problem.get(table)
            if problem:
                print(f"    {label} {table}: {problem}")


# Where the upgrade's time goes.

# Functions of management.tier_move that --phases times, in call order; a name
# that the module no longer has is skipped.
PHASES = (
    "preflight",
    "migrate_target",
    "copy_table",
    "finish_target",
    "verify_copy",
    "retire_sqlite",
    "keep_sqlite_backup",
)
# Runs in the project's backend folder with the project's interpreter. It wraps
# each phase in a timer, runs the upgrade in this process and prints the
# seconds per phase as JSON on its last line.
PHASES_SCRIPT = """
import json, sys, time
sys.path.insert(0, ".")
from management import cli, provisioning, tier_move

seconds = {}

def timed(module, name):
    function = getattr(module, name, None)
    if function is None:
        return
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
    setattr(module, name, wrapper)

for name in sys.argv[2:]:
    timed(tier_move, name)
timed(provisioning, "provision")
started = time.perf_counter()
status = cli.main(["--json", "upgrade", "--to", sys.argv[1]])
seconds["whole upgrade"] = time.perf_counter() - started
print(json.dumps(seconds))
sys.exit(status)
"""


def time_phases(
    rows: int,
    base_project: Path,
    source: Path,
    python: Path,
    admin_url: str,
    work: Path,
) -> bool:
    """Run one more upgrade of ``source`` with a timer per phase; return whether it failed."""
    project = work / f"project-phases-{rows}"
    shutil.copytree(base_project, project, symlinks=True)
    backend = project / "backend"
    # The rendered project's database may still have its write-ahead log,
    # which SQLite would apply to the copied file.
    for suffix in ("-wal", "-shm"):
        (backend / f"database.sqlite{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, backend / "database.sqlite")

    checkpoint(admin_url)
    completed = subprocess.run(
        [str(python), "-c", PHASES_SCRIPT, TIER, *PHASES],
        cwd=backend,
        env=clean_env(ADMIN_DATABASE_URL=admin_url),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )
    if completed.returncode != 0:
        # A failed upgrade removes what it provisioned, so there is nothing to deprovision.
        print(
            f"  the timed upgrade FAILED with status {completed.returncode}:\n"
            f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
        )
        shutil.rmtree(project)
        return True

    seconds = json.loads(completed.stdout.splitlines()[-1])
    whole = seconds.pop("whole upgrade")
    listed = ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())
    print(
        f"  phases of one more upgrade in-process ({whole:.1f} s, the interpreter's "
        f"start not included): {listed}; the rest {whole - sum(seconds.values()):.1f} s"
    )
    removed = deprovision(backend, python, admin_url)
    shutil.rmtree(project)
    return not removed


# One size: fill, move twice, compare, clean up.


@dataclass
class SizeResult:
    """Figures of one size."""

    rows: int
    upgrade: Measurement
    pgloader: Measurement

    @property
    def ratio(self) -> float:
        """Upgrade's rows per second divided by pgloader's."""
        return self.pgloader.seconds / self.upgrade.seconds


def fill_project(
    rows: int, base_project: Path, work: Path
) -> tuple[Path, Path, dict[str, int]]:
    """Copy the project, fill its database; return its backend, a copy of the file, and the counts."""
    project = work / f"project-{rows}"
    shutil.copytree(base_project, project, symlinks=True)
    backend = project / "backend"
    started = time.perf_counter()
    sizes = fill_database(backend / "database.sqlite", rows)
    # The upgrade removes the live file, so pgloader reads this copy.
    source = work / f"source-{rows}.sqlite"
    shutil.copyfile(backend / "database.sqlite", source)
    print(
        f"  filled SQLite in {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{table} {count}" for table, count in sizes.items())
        + f"; file {source.stat().st_size / 2**20:.0f} MB"
    )
    return backend, source, sizes


def run_pgloader(
    pgloader: str, source: Path, admin_url: str, work: Path, log: Path
) -> Measurement:
    """Load ``source`` into a new, empty database with pgloader's defaults."""
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PGLOADER_DATABASE))
        )
    checkpoint(admin_url)
    return measure(
        [pgloader, f"sqlite://{source}", libpq_url(admin_url, PGLOADER_DATABASE)],
        work,
        clean_env(),
        log,
    )


def deprovision(backend: Path, python: Path, admin_url: str) -> bool:
    """Remove the moved project's role and schema; return whether that worked."""
    removed = subprocess.run(
        [str(python), "manage.py", "deprovision", "--yes"],
        cwd=backend,
        env=clean_env(ADMIN_DATABASE_URL=admin_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if removed.returncode != 0:
        print(f"  manage.py deprovision FAILED:\n{removed.stdout}{removed.stderr}")
    return removed.returncode == 0


def compare_and_check(admin_url: str, sizes: dict[str, int]) -> bool:
    """Print how the two targets differ; return whether either lacks rows."""
    with psycopg.connect(
        libpq_url(admin_url, SHARED_DATABASE), autocommit=True
    ) as connection:
        upgrade_target = describe_target(connection, PROJECT_SCHEMA)
    with psycopg.connect(
        libpq_url(admin_url, PGLOADER_DATABASE), autocommit=True
    ) as connection:
        pgloader_target = describe_target(connection, "public")
    print("  targets:")
    compare_targets(upgrade_target, pgloader_target)
    failed = False
    for label, info in (("upgrade", upgrade_target), ("pgloader", pgloader_target)):
        if info.rows != sizes:
            print(f"  {label} target has rows {info.rows}, expected {sizes}: FAILED")
            failed = True
    return failed


def run_size(
    rows: int,
    base_project: Path,
    python: Path,
    pgloader: str,
    admin_url: str,
    work: Path,
    phases: bool,
) -> tuple[SizeResult | None, bool]:
    """Measure both tools on ``rows`` rows; return the figures and whether a step failed."""
    print(f"\n{rows} rows")
    backend, source, sizes = fill_project(rows, base_project, work)

    checkpoint(admin_url)
    upgrade_log = work / f"upgrade-{rows}.log"
    upgrade = measure(
        [str(python), "manage.py", "--json", "upgrade", "--to", TIER],
        backend,
        clean_env(ADMIN_DATABASE_URL=admin_url),
        upgrade_log,
    )
    if upgrade.returncode != 0:
        print(f"  upgrade FAILED with status {upgrade.returncode}:")
        print(upgrade_log.read_text(encoding="utf-8")[-3000:])
        return None, True

    pgloader_log = work / f"pgloader-{rows}.log"
    loaded = run_pgloader(pgloader, source, admin_url, work, pgloader_log)
    failed = loaded.returncode != 0
    if failed:
        print(f"  pgloader FAILED with status {loaded.returncode}:")
        print(pgloader_log.read_text(encoding="utf-8")[-3000:])

    result = SizeResult(rows, upgrade, loaded)
    print_size(result)
    failed |= compare_and_check(admin_url, sizes)
    failed |= not deprovision(backend, python, admin_url)
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                sql.Identifier(PGLOADER_DATABASE)
            )
        )
    shutil.rmtree(backend.parent)
    if phases:
        failed |= time_phases(rows, base_project, source, python, admin_url, work)
    source.unlink()
    return result, failed


def print_size(result: SizeResult) -> None:
    for label, measured in (("upgrade", result.upgrade), ("pgloader", result.pgloader)):
        print(
            f"  {label + ':':<9} {measured.seconds:6.1f} s, "
            f"{result.rows / measured.seconds:8.0f} rows/s, peak RSS "
            f"{measured.peak_tree_mb:.0f} MB for the process tree at "
            f"{measured.peak_tree_at:.1f} s ({measured.peak_process_mb:.0f} MB the "
            "largest single process)"
        )
    print(f"  ratio upgrade/pgloader rows/s: {result.ratio:.2f}x")


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_summary(results: list[SizeResult]) -> None:
    print(
        "\nsummary (peak RSS of the process tree, then of the largest single process)"
    )
    print(
        "  rows       upgrade rows/s  pgloader rows/s  ratio  "
        "upgrade peak    pgloader peak"
    )
    for result in results:
        upgrade, loaded = result.upgrade, result.pgloader
        print(
            f"  {result.rows:<10} {result.rows / upgrade.seconds:>14.0f}  "
            f"{result.rows / loaded.seconds:>15.0f}  {result.ratio:>4.2f}x  "
            f"{upgrade.peak_tree_mb:>4.0f} / {upgrade.peak_process_mb:>3.0f} MB  "
            f"{loaded.peak_tree_mb:>4.0f} / {loaded.peak_process_mb:>3.0f} MB"
        )
    largest = results[-1]
    if largest.pgloader.returncode == 0:
        print(
            f"  ratio at {largest.rows} rows: {largest.ratio:.2f}x (target at least "
            f"{TARGET_RATIO}x: {verdict(largest.ratio >= TARGET_RATIO)})"
        )
    else:
        print(f"  ratio at {largest.rows} rows: none, pgloader failed")
    tree = max(result.upgrade.peak_tree_mb for result in results)
    single = max(result.upgrade.peak_process_mb for result in results)
    print(
        f"  upgrade peak memory (target under {TARGET_PEAK_MB:.0f} MB): process tree "
        f"{tree:.0f} MB, {verdict(tree < TARGET_PEAK_MB)}; largest single process "
        f"{single:.0f} MB, {verdict(single < TARGET_PEAK_MB)}"
    )
    if len(results) > 1:
        smallest = results[0]
        tree_growth = largest.upgrade.peak_tree_mb / smallest.upgrade.peak_tree_mb - 1
        single_growth = (
            largest.upgrade.peak_process_mb / smallest.upgrade.peak_process_mb - 1
        )
        flat = max(tree_growth, single_growth) <= FLAT_TOLERANCE
        print(
            f"  upgrade peak from {smallest.rows} to {largest.rows} rows: process tree "
            f"{tree_growth * 100:+.0f} %, largest single process "
            f"{single_growth * 100:+.0f} % (target flat, at most "
            f"{FLAT_TOLERANCE * 100:.0f} %: {verdict(flat)})"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        default=DEFAULT_ROWS,
        help=f"comma-separated row counts across all tables, one run each (default {DEFAULT_ROWS})",
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="after each size, run one more upgrade in-process and print the seconds of each phase",
    )
    args = parser.parse_args()
    try:
        args.rows = sorted(int(value) for value in args.rows.split(","))
    except ValueError:
        parser.error(f"--rows must be integers separated by commas, got {args.rows!r}")
    for rows in args.rows:
        if not MIN_ROWS <= rows <= MAX_ROWS:
            parser.error(
                f"--rows values must be between {MIN_ROWS} and {MAX_ROWS}, got {rows}"
            )
    return args


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    put_uv_on_path()
    print(f"machine: {describe_machine()}; {describe_load()}")
    print(f"template: {describe_revision()}")
    pgloader = ensure_pgloader()
    print(f"pgloader: {pgloader_version(pgloader)}")

    results: list[SizeResult] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-tier-move-") as temp:
        work = Path(temp)
        template = snapshot_template(work / "aicoder-template")
        python = create_venv(work / "venv")
        base_project = render_project(
            template,
            work / "project",
            {"models": MODELS, "project_slug": PROJECT_SLUG},
            python,
            seed=False,
        )
        with PostgresServer() as server:
            with psycopg.connect(libpq_url(server.admin_url), autocommit=True) as admin:
                version = admin.execute("SHOW server_version").fetchone()[0]
            print(
                f"server: PostgreSQL {version} on 127.0.0.1, fsync, "
                "synchronous_commit and full_page_writes off"
            )
            for rows in args.rows:
                result, size_failed = run_size(
                    rows,
                    base_project,
                    python,
                    pgloader,
                    server.admin_url,
                    work,
                    args.phases,
                )
                failed |= size_failed
                if result is None:
                    break
                results.append(result)
    if results:
        print_summary(results)
    print(f"\nload at the end: {describe_load()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
