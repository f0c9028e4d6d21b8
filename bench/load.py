"""Benchmark the load test's mixed workload on SQLite and on tier 2.

The script renders one project with a ``Counter`` model, seeds 16 counters
through ``manage.py seed``, and copies it. One copy stays on SQLite; the
other moves to tier 2 (``manage.py upgrade --to postgres_schema``) on a
throwaway PostgreSQL server from ``tests/postgres_server.py``. For each tier
it runs three phases of ``tests/load_workload.py``'s clients, each against a
newly started uvicorn with 2 workers on 127.0.0.1:

1. **reads, 64 clients** (baseline): list a page, or read one counter;
2. **mixed, 1 client** (baseline): the load test's mix of list reads,
   single-row reads, creates and If-Match increments, with no other client;
3. **mixed, 64 clients**: the same mix from 64 clients, as in the load test.

After each phase the server stops and the script reads the database
directly, to count rows whose value or presence differs from what the
clients saw succeed (lost updates or lost creates). It prints requests and
writes per second, p50 and p99 latency per request kind, 412 responses, and
ratios of phase 3 against both baselines.

Run from the repository root (about 4 minutes with the defaults). The
PostgreSQL server needs the same binaries as the PostgreSQL tests, and runs
as the ``postgres`` OS user when the script runs as root:

    .venv/bin/python bench/load.py
    .venv/bin/python bench/load.py --seconds 60 --tiers sqlite

The benchmark prints figures; it checks no timing. It exits with status 1
when a phase gets a 5xx, a transport error or a database that differs from
the clients' count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from concurrency import summarize_server_log
from support import (
    clean_env,
    create_venv,
    describe_load,
    describe_machine,
    describe_revision,
    percentile,
    put_uv_on_path,
    render_project,
    run,
    snapshot_template,
    uvicorn_server,
)

from tests.load_workload import (
    COUNTER_MODELS,
    MIXED_WEIGHTS,
    READ_ONLY_WEIGHTS,
    REQUEST_KINDS,
    REQUEST_TIMEOUT,
    LoadResult,
    differences,
    expected_counters,
    hot_rows_seed,
    project_database_url,
    read_postgres_counters,
    read_sqlite_counters,
    run_load,
)
from tests.postgres_server import PostgresServer

TIERS = ("sqlite", "postgres_schema")
HOT_ROWS = 16
PROJECT_SLUG = "load-bench"
# Phases in order: name, operation weights, and clients (None: the --clients value).
PHASES = (
    ("reads", READ_ONLY_WEIGHTS, None),
    ("mixed", MIXED_WEIGHTS, 1),
    ("mixed", MIXED_WEIGHTS, None),
)
COMMAND_TIMEOUT = 600


@dataclass
class PhaseRecord:
    """One phase's tally and what the database held afterwards."""

    tier: str
    phase: str
    result: LoadResult
    rows_expected: int
    rows_found: int
    rows_differing: int
    server_log: list[str]
    # CPU seconds that this process, its client threads included, used in the phase.
    client_cpu_seconds: float

    @property
    def failed(self) -> bool:
        return bool(
            self.result.server_errors
            or self.result.transport_errors
            or self.result.unexpected_statuses
            or self.result.client_failures
            or self.result.unfinished_clients
            or self.rows_differing
        )


def manage(python: Path, backend: Path, *args: str, **env: str) -> tuple[int, str]:
    result = run(
        [str(python), "manage.py", *args],
        cwd=backend,
        env=clean_env(**env),
        timeout=COMMAND_TIMEOUT,
    )
    return result.returncode, result.stdout + result.stderr


def prepare_project(template: Path, python: Path, work: Path) -> Path:
    """Render the Counter project and seed HOT_ROWS counters through manage.py."""
    (work / "sqlite").mkdir()
    project = render_project(
        template,
        work / "sqlite" / PROJECT_SLUG,
        {"models": COUNTER_MODELS, "project_slug": PROJECT_SLUG},
        python,
        seed=False,
    )
    backend = project / "backend"
    (backend / "seeds" / "Counter.json").write_text(
        json.dumps(hot_rows_seed(HOT_ROWS)), encoding="utf-8"
    )
    status, output = manage(python, backend, "seed")
    if status != 0:
        raise RuntimeError(f"manage.py seed failed:\n{output}")
    return project


def move_to_schema_tier(project: Path, python: Path, admin_url: str) -> None:
    """Move the project to tier 2 with manage.py upgrade."""
    status, output = manage(
        python,
        project / "backend",
        "upgrade",
        "--to",
        "postgres_schema",
        ADMIN_DATABASE_URL=admin_url,
    )
    if status != 0:
        raise RuntimeError(f"manage.py upgrade --to postgres_schema failed:\n{output}")


def read_counters(tier: str, backend: Path) -> dict[int, tuple[str, int]]:
    if tier == "sqlite":
        return read_sqlite_counters(backend / "database.sqlite")
    return read_postgres_counters(project_database_url(backend))


def run_phase(
    tier: str,
    backend: Path,
    python: Path,
    number: int,
    phase: str,
    weights: dict[str, int],
    clients: int,
    args: argparse.Namespace,
    log_dir: Path,
) -> PhaseRecord:
    """Serve the project, run one phase, stop the server and compare the database."""
    initial = read_counters(tier, backend)
    row_ids = sorted(
        row_id for row_id, (name, _) in initial.items() if name.startswith("hot-")
    )
    log_file = log_dir / f"{tier}-{number}-{phase}-{clients}.log"
    with uvicorn_server(
        python, backend, workers=args.workers, log_file=log_file
    ) as base_url:
        # Untimed warm-up on new connections, which the kernel spreads over the
        # workers, so that the timed phase does not start with a cold worker.
        for _ in range(4 * args.workers):
            httpx.get(
                f"{base_url}/counters/{row_ids[0]}",
                timeout=REQUEST_TIMEOUT,
                trust_env=False,
            )
        cpu_before = time.process_time()
        result = run_load(
            base_url,
            row_ids,
            clients=clients,
            seconds=args.seconds,
            weights=weights,
            name_prefix=f"phase{number}",
        )
        client_cpu_seconds = time.process_time() - cpu_before
    final = read_counters(tier, backend)
    expected = expected_counters(initial, result)
    return PhaseRecord(
        tier=tier,
        phase=phase,
        result=result,
        rows_expected=len(expected),
        rows_found=len(final),
        rows_differing=len(differences(expected, final)),
        server_log=summarize_server_log(log_file),
        client_cpu_seconds=client_cpu_seconds,
    )


def run_tier(
    tier: str, project: Path, python: Path, args: argparse.Namespace, log_dir: Path
) -> list[PhaseRecord]:
    records = []
    for number, (phase, weights, phase_clients) in enumerate(PHASES, start=1):
        clients = phase_clients or args.clients
        print(
            f"  {tier}: {phase}, {clients} client(s), {args.seconds:.0f} s ({describe_load()})"
        )
        record = run_phase(
            tier,
            project / "backend",
            python,
            number,
            phase,
            weights,
            clients,
            args,
            log_dir,
        )
        for line in record.server_log:
            print(f"    server log: {line}")
        records.append(record)
    return records


def milliseconds(values: list[float], fraction: float) -> str:
    value = percentile(values, fraction)
    return "-" if value != value else f"{value * 1000:.0f}"


def print_row(cells: list[tuple[str, int]]) -> None:
    print("".join(f"{text:>{width}}" for text, width in cells))


def print_tables(records: list[PhaseRecord]) -> None:
    print("Throughput and correctness")
    print_row(
        [
            ("tier", 16),
            ("phase", 7),
            ("clients", 8),
            ("s", 5),
            ("req/s", 7),
            ("writes/s", 9),
            ("creates", 8),
            ("incr", 6),
            ("412", 6),
            ("out", 5),
            ("5xx", 5),
            ("transp", 7),
            ("rows", 7),
            ("differ", 7),
            ("client CPU", 11),
        ]
    )
    for record in records:
        result = record.result
        print_row(
            [
                (record.tier, 16),
                (record.phase, 7),
                (str(result.clients), 8),
                (f"{result.seconds:.0f}", 5),
                (f"{result.requests / result.seconds:.0f}", 7),
                (f"{result.successful_writes / result.seconds:.1f}", 9),
                (str(len(result.created)), 8),
                (str(result.successful_increments), 6),
                (str(result.retries), 6),
                (str(result.exhausted), 5),
                (str(sum(result.server_errors.values())), 5),
                (str(len(result.transport_errors)), 7),
                (f"{record.rows_found}", 7),
                (str(record.rows_differing), 7),
                (f"{record.client_cpu_seconds / result.seconds:.2f}", 11),
            ]
        )
    print(
        "writes/s: creates that returned 201 plus PATCHes that returned 200, per\n"
        "second. incr: increments that returned 200. 412: PATCHes that returned 412,\n"
        "each followed by a new read. out: increments that got 412 on all attempts.\n"
        "rows: rows in the database after the phase. differ: rows whose value or\n"
        "presence differs from what the clients saw succeed (0 means no lost update\n"
        "and no lost create). client CPU: cores that the client threads kept busy,\n"
        "on average (CPU seconds of this process divided by the phase's seconds)."
    )
    print()
    print("Latency in ms, p50 / p99, per request kind")
    print_row(
        [("tier", 16), ("phase", 7), ("clients", 8)]
        + [(kind, 18) for kind in REQUEST_KINDS]
    )
    for record in records:
        cells = [(record.tier, 16), (record.phase, 7), (str(record.result.clients), 8)]
        for kind in REQUEST_KINDS:
            values = record.result.latencies.get(kind, [])
            text = (
                f"{milliseconds(values, 0.5)} / {milliseconds(values, 0.99)}"
                if values
                else "-"
            )
            cells.append((text, 18))
        print_row(cells)


def print_ratios(records: list[PhaseRecord]) -> None:
    print()
    print("Mixed load from many clients against the baselines:")
    for tier in TIERS:
        phases = [record for record in records if record.tier == tier]
        if len(phases) != len(PHASES):
            continue
        reads, single, mixed = (record.result for record in phases)
        print(
            f"  {tier}: requests/s {mixed.requests / mixed.seconds:.0f} mixed against "
            f"{reads.requests / reads.seconds:.0f} reads only "
            f"({mixed.requests * reads.seconds / (mixed.seconds * reads.requests):.2f}x)"
        )
        for kind in ("list", "get"):
            mixed_p99 = percentile(mixed.latencies.get(kind, []), 0.99)
            reads_p99 = percentile(reads.latencies.get(kind, []), 0.99)
            single_p99 = percentile(single.latencies.get(kind, []), 0.99)
            print(
                f"    {kind} p99: {mixed_p99 * 1000:.0f} ms mixed, "
                f"{reads_p99 * 1000:.0f} ms reads only ({mixed_p99 / reads_p99:.1f}x), "
                f"{single_p99 * 1000:.0f} ms with 1 client ({mixed_p99 / single_p99:.1f}x)"
            )
        for kind in ("create", "increment PATCH"):
            mixed_p99 = percentile(mixed.latencies.get(kind, []), 0.99)
            single_p99 = percentile(single.latencies.get(kind, []), 0.99)
            print(
                f"    {kind} p99: {mixed_p99 * 1000:.0f} ms mixed, "
                f"{single_p99 * 1000:.0f} ms with 1 client ({mixed_p99 / single_p99:.1f}x)"
            )
        print(
            f"    writes/s: {mixed.successful_writes / mixed.seconds:.1f} with "
            f"{mixed.clients} clients, {single.successful_writes / single.seconds:.1f} "
            "with 1 client"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="length of each phase in seconds (default 30)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=64,
        help="client threads in the reads phase and the second mixed phase (default 64)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="uvicorn workers (default 2)"
    )
    parser.add_argument(
        "--tiers",
        nargs="+",
        choices=TIERS,
        default=list(TIERS),
        help="tiers to measure (default both)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.seconds <= 0 or args.clients < 1 or args.workers < 1:
        print(
            "error: --seconds must be positive and --clients and --workers at least 1, "
            f"got {args.seconds}, {args.clients} and {args.workers}",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    put_uv_on_path()
    print(f"machine: {describe_machine()}; {describe_load()}")
    print(f"template: {describe_revision()}")
    print(
        f"{args.workers} uvicorn workers, {HOT_ROWS} seeded counters, phases of "
        f"{args.seconds:.0f} s; server, database and clients share the machine"
    )

    records: list[PhaseRecord] = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as temp:
        work = Path(temp)
        template = snapshot_template(work / "aicoder-template")
        python = create_venv(work / "venv")
        project = prepare_project(template, python, work)
        # Copied before the SQLite phases change its rows, so both tiers start alike.
        schema_tier_project = work / "postgres_schema" / PROJECT_SLUG
        shutil.copytree(project, schema_tier_project, symlinks=True)
        log_dir = work / "logs"
        log_dir.mkdir()
        if "sqlite" in args.tiers:
            records += run_tier("sqlite", project, python, args, log_dir)
        if "postgres_schema" in args.tiers:
            with PostgresServer() as server:
                admin_url = server.admin_url
                with psycopg.connect(
                    admin_url.replace("postgresql+psycopg://", "postgresql://")
                ) as admin:
                    version = admin.execute("SHOW server_version").fetchone()[0]
                print(
                    f"server: PostgreSQL {version} on 127.0.0.1, fsync, "
                    "synchronous_commit and full_page_writes off"
                )
                move_to_schema_tier(schema_tier_project, python, admin_url)
                try:
                    records += run_tier(
                        "postgres_schema", schema_tier_project, python, args, log_dir
                    )
                finally:
                    status, output = manage(
                        python,
                        schema_tier_project / "backend",
                        "deprovision",
                        "--yes",
                        ADMIN_DATABASE_URL=admin_url,
                    )
                    if status != 0:
                        print(f"  deprovision failed:\n{output}")
    print()
    print_tables(records)
    print_ratios(records)
    print(f"\ntotal time {time.monotonic() - started:.0f} s; {describe_load()}")
    failed = [record for record in records if record.failed]
    for record in failed:
        print(
            f"FAILED: {record.tier} {record.phase} with {record.result.clients} clients: "
            f"{record.result.summary()}; {record.rows_differing} rows differ",
            file=sys.stderr,
        )
        for message in [
            *record.result.transport_errors[:5],
            *record.result.client_failures[:5],
            *record.result.wrong_responses[:5],
        ]:
            print(f"  {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
