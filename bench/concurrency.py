"""Benchmark the generated API under concurrent read-then-write increments.

One project with a ``Counter`` model is rendered twice: as generated, and with
``backend/database.py`` replaced by the plain SQLAlchemy pattern (no pragmas, no
BEGIN IMMEDIATE, default pool, default ``expire_on_commit``). Each copy runs
under uvicorn on 127.0.0.1 with 1 and 2 workers. For each client count, client
threads first increment one row for a fixed time: GET it, then PATCH
value + 1 with ``If-Match: <ETag>``, and read again on 412. Then they only read
it for a fixed time. Every loop stops at its deadline or at its request cap, and
a request gives up after ``REQUEST_TIMEOUT`` seconds.

Run from the repository root (about 5 minutes, at most about 10):

    .venv/bin/python bench/concurrency.py

The benchmark prints figures and ratios; it checks no timing.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from support import (
    create_venv,
    describe_load,
    describe_machine,
    describe_revision,
    percentile,
    put_uv_on_path,
    render_project,
    snapshot_template,
    uvicorn_server,
)

COUNTER_MODELS = [
    {
        "name": "Counter",
        "fields": {
            "name": "string(40) required unique",
            "value": "integer required default=0",
        },
    }
]

# The baseline: the common SQLAlchemy setup with no SQLite tuning, plus a no-op
# begin_write so that the generated crud.py still imports.
PLAIN_DATABASE_PY = '''"""Plain SQLAlchemy setup: the baseline of bench/concurrency.py."""

import os

from dotenv import load_dotenv
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

load_dotenv()
DATABASE_URL = os.environ["DATABASE_URL"]
engine = create_engine(DATABASE_URL)
SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)


def get_db():
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


def begin_write(db):
    """Do nothing, because the plain pattern starts no write transaction of its own."""
'''

PATTERNS = ("plain", "template")
WORKER_COUNTS = (1, 2)
CLIENT_COUNTS = (16, 64, 100)
REQUEST_TIMEOUT = 60.0
# Caps the requests of one client in one phase, well above what 10 s allow.
MAX_REQUESTS_PER_CLIENT = 20_000
SERVER_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Timeout)\b.*")

P99_TARGET_FRACTION = 0.25


@dataclass
class PhaseResult:
    """Counts and latencies of one phase of one case."""

    pattern: str
    workers: int
    clients: int
    phase: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    patch_latencies: list[float] = field(default_factory=list)
    succeeded: int = 0
    conflicts: int = 0
    server_errors: int = 0
    other_statuses: int = 0
    timeouts: int = 0
    transport_errors: int = 0
    unknown_writes: int = 0
    patches: int = 0
    peak_in_flight: int = 0
    final_value: int | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def unanswered(self) -> int:
        return self.timeouts + self.transport_errors

    @property
    def succeeded_per_second(self) -> float:
        return self.succeeded / self.seconds if self.seconds else 0.0

    @property
    def applied_per_second(self) -> float:
        """Increments that the final value contains, per second of the phase."""
        if self.final_value is None or not self.seconds:
            return 0.0
        return self.final_value / self.seconds

    @property
    def lost_updates(self) -> int | None:
        """Acknowledged increments missing from the final value (the counter starts at 0)."""
        if self.final_value is None:
            return None
        return self.succeeded - self.final_value


class LoadRecorder:
    """Request sender for one client thread that records latencies and failures."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.latencies: list[float] = []
        self.patch_latencies: list[float] = []
        self.timeouts = 0
        self.transport_errors = 0

    def send(
        self, client: httpx.Client, method: str, url: str, **kwargs
    ) -> httpx.Response | None:
        """Send one request and return its response, or None when it timed out or failed."""
        self.shared.enter()
        start = time.perf_counter()
        try:
            return client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            self.timeouts += 1
            return None
        except httpx.TransportError:
            self.transport_errors += 1
            return None
        finally:
            elapsed = time.perf_counter() - start
            self.latencies.append(elapsed)
            if method == "PATCH":
                self.patch_latencies.append(elapsed)
            self.shared.leave()


class SharedState:
    """The phase's deadline and the number of requests in flight across threads."""

    def __init__(self, clients: int) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.deadline = 0.0
        self.start_barrier = threading.Barrier(clients + 1)

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


@dataclass
class ClientTally:
    """Counts of one client thread, merged into a PhaseResult at the end."""

    succeeded: int = 0
    conflicts: int = 0
    server_errors: int = 0
    other_statuses: int = 0
    unknown_writes: int = 0
    patches: int = 0

    def count_status(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            self.server_errors += 1
        elif response.status_code == 412:
            self.conflicts += 1
        elif response.status_code >= 300:
            self.other_statuses += 1


def increment_loop(
    client: httpx.Client, url: str, shared: SharedState, recorder: LoadRecorder
) -> ClientTally:
    """Increment the counter with If-Match until the deadline, reading it again after a 412."""
    tally = ClientTally()
    for _ in range(MAX_REQUESTS_PER_CLIENT // 2):
        if time.monotonic() >= shared.deadline:
            break
        current = recorder.send(client, "GET", url)
        if current is None:
            continue
        if current.status_code != 200:
            tally.count_status(current)
            continue
        if time.monotonic() >= shared.deadline:
            break
        tally.patches += 1
        updated = recorder.send(
            client,
            "PATCH",
            url,
            json={"value": current.json()["value"] + 1},
            headers={"If-Match": current.headers["ETag"]},
        )
        if updated is None:
            tally.unknown_writes += 1
        elif updated.status_code == 200:
            tally.succeeded += 1
        else:
            tally.count_status(updated)
    return tally


def read_loop(
    client: httpx.Client, url: str, shared: SharedState, recorder: LoadRecorder
) -> ClientTally:
    """Read the counter until the deadline."""
    tally = ClientTally()
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= shared.deadline:
            break
        response = recorder.send(client, "GET", url)
        if response is None:
            continue
        if response.status_code == 200:
            tally.succeeded += 1
        else:
            tally.count_status(response)
    return tally


def run_phase(
    result: PhaseResult, base_url: str, row_url: str, seconds: float
) -> PhaseResult:
    """Run ``result.clients`` client threads through one phase and fill in ``result``."""
    loop = increment_loop if result.phase == "increments" else read_loop
    shared = SharedState(result.clients)
    recorders: list[LoadRecorder] = []
    tallies: list[ClientTally] = []
    merge_lock = threading.Lock()

    def client_thread() -> None:
        recorder = LoadRecorder(shared)
        tally = ClientTally()
        # One connection per client, so each thread is one concurrent client.
        with httpx.Client(
            base_url=base_url, timeout=REQUEST_TIMEOUT, trust_env=False
        ) as client:
            shared.start_barrier.wait()
            try:
                tally = loop(client, row_url, shared, recorder)
            finally:
                with merge_lock:
                    recorders.append(recorder)
                    tallies.append(tally)

    threads = [
        threading.Thread(target=client_thread, daemon=True, name=f"client-{index}")
        for index in range(result.clients)
    ]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    shared.deadline = start + seconds
    shared.start_barrier.wait()
    # Each thread starts no request after the deadline, and a request in flight
    # then ends within REQUEST_TIMEOUT.
    join_deadline = shared.deadline + REQUEST_TIMEOUT + 10
    for thread in threads:
        thread.join(timeout=max(0.0, join_deadline - time.monotonic()))
    result.seconds = time.monotonic() - start

    with merge_lock:
        for recorder in recorders:
            result.latencies.extend(recorder.latencies)
            result.patch_latencies.extend(recorder.patch_latencies)
            result.timeouts += recorder.timeouts
            result.transport_errors += recorder.transport_errors
        for tally in tallies:
            result.succeeded += tally.succeeded
            result.conflicts += tally.conflicts
            result.server_errors += tally.server_errors
            result.other_statuses += tally.other_statuses
            result.unknown_writes += tally.unknown_writes
            result.patches += tally.patches
    still_running = sum(thread.is_alive() for thread in threads)
    if still_running:
        print(
            f"    NOTE: {still_running} client threads had not finished at the join deadline"
        )
    result.peak_in_flight = shared.peak_in_flight
    return result


def make_plain_copy(project: Path, destination: Path) -> Path:
    """Copy the rendered project and give the copy the plain database.py and journal mode."""
    shutil.copytree(project, destination, ignore=shutil.ignore_patterns("__pycache__"))
    backend = destination / "backend"
    (backend / "database.py").write_text(PLAIN_DATABASE_PY, encoding="utf-8")
    # The template's engine switched the file to WAL, and SQLite stores that mode
    # in the file. The plain pattern never sets it, so restore the default journal.
    with sqlite3.connect(backend / "database.sqlite") as connection:
        mode = connection.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    if mode != "delete":
        raise RuntimeError(
            f"switching the plain copy's journal mode to delete failed: SQLite kept {mode}"
        )
    return destination


def summarize_server_log(log_file: Path) -> list[str]:
    """Return the most frequent exception lines in the server's log, with counts."""
    counts: collections.Counter[str] = collections.Counter()
    for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if SERVER_ERROR_LINE.match(line):
            counts[line[:140]] += 1
    return [f"{count} x {line}" for line, count in counts.most_common(3)]


def run_case(
    project: Path,
    venv_python: Path,
    pattern: str,
    workers: int,
    clients: int,
    args: argparse.Namespace,
    log_dir: Path,
) -> list[PhaseResult]:
    log_file = log_dir / f"{pattern}-w{workers}-c{clients}.log"
    backend = project / "backend"
    with uvicorn_server(
        venv_python, backend, workers=workers, log_file=log_file
    ) as base_url:
        with httpx.Client(
            base_url=base_url, timeout=REQUEST_TIMEOUT, trust_env=False
        ) as client:
            created = client.post(
                "/counters", json={"name": f"w{workers}-c{clients}", "value": 0}
            )
            if created.status_code != 201:
                raise RuntimeError(
                    f"creating the counter failed with {created.status_code}: {created.text}"
                )
            row_url = f"/counters/{created.json()['id']}"
            # Untimed warm-up on new connections, which the kernel spreads over the
            # workers, so that the timed phase does not start with a cold worker.
            for _ in range(4 * workers):
                httpx.get(
                    f"{base_url}{row_url}", timeout=REQUEST_TIMEOUT, trust_env=False
                )

            increments = run_phase(
                PhaseResult(pattern, workers, clients, "increments"),
                base_url,
                row_url,
                args.write_seconds,
            )
            final = client.get(row_url)
            if final.status_code == 200:
                increments.final_value = final.json()["value"]
            reads = run_phase(
                PhaseResult(pattern, workers, clients, "reads"),
                base_url,
                row_url,
                args.read_seconds,
            )
    for line in summarize_server_log(log_file):
        print(f"    server log: {line}")
    return [increments, reads]


def format_milliseconds(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.0f}"


def print_row(cells: list[tuple[str, int]]) -> None:
    print("".join(f"{text:>{width}}" for text, width in cells))


def print_tables(results: list[PhaseResult]) -> None:
    """Print one table for the increments phases and one for the reads phases."""
    columns = [("pattern", 9), ("workers", 8), ("clients", 8), ("s", 6)]
    increments = [result for result in results if result.phase == "increments"]
    reads = [result for result in results if result.phase == "reads"]

    print("Increments (GET, then PATCH value + 1 with If-Match; read again after 412)")
    header = [*columns, ("ok/s", 7), ("applied/s", 10), ("PATCH/s", 8), ("req/s", 7)]
    header += [("p50 ms", 8), ("p99 ms", 8), ("PATCH p99", 10), ("412", 7)]
    header += [("5xx", 6), ("transp", 7)]
    header += [("timeout", 8), ("lost", 6), ("unknown", 8), ("peak", 6)]
    print_row(header)
    for result in increments:
        lost = "-" if result.lost_updates is None else str(result.lost_updates)
        print_row(
            [
                *identify(result, columns),
                (f"{result.succeeded_per_second:.1f}", 7),
                (f"{result.applied_per_second:.1f}", 10),
                (f"{result.patches / result.seconds:.0f}", 8),
                (f"{result.requests / result.seconds:.0f}", 7),
                *latency_cells(result),
                (format_milliseconds(percentile(result.patch_latencies, 0.99)), 10),
                (str(result.conflicts), 7),
                (str(result.server_errors), 6),
                (str(result.transport_errors), 7),
                (str(result.timeouts), 8),
                (lost, 6),
                (str(result.unknown_writes), 8),
                (str(result.peak_in_flight), 6),
            ]
        )
    print(
        "s: phase length, including the wait for requests in flight at its deadline.\n"
        "ok/s: PATCHes answered 200 per second. applied/s: increments that the final\n"
        "value contains, per second. lost: PATCHes answered 200 minus the final value.\n"
        "unknown: PATCHes that got no response. peak: most requests in flight at once.\n"
        "p50 and p99 cover every GET and PATCH of the phase, PATCH p99 the PATCHes alone."
    )
    print()

    print("Reads (GET the row)")
    header = [*columns, ("ok/s", 7), ("p50 ms", 8), ("p99 ms", 8), ("5xx", 6)]
    header += [("transp", 7), ("timeout", 8), ("peak", 6)]
    print_row(header)
    for result in reads:
        print_row(
            [
                *identify(result, columns),
                (f"{result.succeeded_per_second:.0f}", 7),
                *latency_cells(result),
                (str(result.server_errors), 6),
                (str(result.transport_errors), 7),
                (str(result.timeouts), 8),
                (str(result.peak_in_flight), 6),
            ]
        )


def identify(
    result: PhaseResult, columns: list[tuple[str, int]]
) -> list[tuple[str, int]]:
    values = [
        result.pattern,
        str(result.workers),
        str(result.clients),
        f"{result.seconds:.0f}",
    ]
    return [(value, width) for value, (_, width) in zip(values, columns, strict=True)]


def latency_cells(result: PhaseResult) -> list[tuple[str, int]]:
    return [
        (format_milliseconds(percentile(result.latencies, 0.50)), 8),
        (format_milliseconds(percentile(result.latencies, 0.99)), 8),
    ]


def find(
    results: list[PhaseResult], pattern: str, workers: int, clients: int, phase: str
) -> PhaseResult | None:
    for result in results:
        if (result.pattern, result.workers, result.clients, result.phase) == (
            pattern,
            workers,
            clients,
            phase,
        ):
            return result
    return None


def print_ratios(results: list[PhaseResult]) -> None:
    print()
    print("Template against plain, increments phase:")
    throughput_checks = []
    for workers in WORKER_COUNTS:
        for clients in CLIENT_COUNTS:
            plain = find(results, "plain", workers, clients, "increments")
            template = find(results, "template", workers, clients, "increments")
            if plain is None or template is None:
                print(f"  {workers} worker(s), {clients} clients: not measured")
                continue
            plain_applied = plain.applied_per_second
            template_applied = template.applied_per_second
            applied_ratio = (
                template_applied / plain_applied if plain_applied else float("inf")
            )
            plain_ok = plain.succeeded_per_second
            ok_ratio = (
                template.succeeded_per_second / plain_ok if plain_ok else float("inf")
            )
            met = template_applied >= plain_applied
            throughput_checks.append(met)
            print(
                f"  {workers} worker(s), {clients:>3} clients: applied increments "
                f"{template_applied:.1f}/s vs {plain_applied:.1f}/s = {applied_ratio:.2f}x "
                f"(target >= 1x: {'met' if met else 'MISSED'}); PATCH 200 "
                f"{template.succeeded_per_second:.1f}/s vs {plain_ok:.1f}/s = {ok_ratio:.2f}x"
            )
    if throughput_checks:
        print(
            f"  write throughput target met in {sum(throughput_checks)} of "
            f"{len(throughput_checks)} cases"
        )

    for workers in WORKER_COUNTS:
        plain = find(results, "plain", workers, 16, "increments")
        template = find(results, "template", workers, 16, "increments")
        if plain is None or template is None:
            continue
        plain_p99 = percentile(plain.latencies, 0.99)
        template_p99 = percentile(template.latencies, 0.99)
        fraction = template_p99 / plain_p99 if plain_p99 else float("inf")
        print(
            f"  {workers} worker(s), 16 clients: p99 {template_p99 * 1000:.0f} ms vs "
            f"{plain_p99 * 1000:.0f} ms = {fraction:.2f} of plain's "
            f"(target <= {P99_TARGET_FRACTION}: "
            f"{'met' if fraction <= P99_TARGET_FRACTION else 'MISSED'})"
        )

    for clients in (64, 100):
        for phase in ("increments", "reads"):
            template = find(results, "template", 1, clients, phase)
            if template is None:
                continue
            failed = template.unanswered + template.server_errors
            print(
                f"  1 worker, {clients} clients, {phase}: {template.requests} requests, "
                f"{template.unanswered} unanswered, {template.server_errors} answered 5xx "
                f"(target every request answered without 5xx: {'met' if failed == 0 else 'MISSED'})"
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--write-seconds",
        type=float,
        default=10.0,
        help="length of each increments phase in seconds (default 10)",
    )
    parser.add_argument(
        "--read-seconds",
        type=float,
        default=5.0,
        help="length of each reads phase in seconds (default 5)",
    )
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=600.0,
        help="skip the cases that could end after this many seconds from the start (default 600)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.write_seconds <= 0 or args.read_seconds <= 0:
        print(
            "error: --write-seconds and --read-seconds must be positive, got "
            f"{args.write_seconds} and {args.read_seconds}",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    put_uv_on_path()
    print(f"machine: {describe_machine()}; {describe_load()}")
    print(f"template: {describe_revision()}")
    print(
        f"phases: increments {args.write_seconds:.0f} s, reads {args.read_seconds:.0f} s; "
        f"request timeout {REQUEST_TIMEOUT:.0f} s; server and clients share the machine"
    )
    # The maximum time a case can take: both phases, each followed by a request
    # that runs into the timeout, plus starting and stopping the server.
    worst_case_seconds = (
        args.write_seconds + args.read_seconds + 2 * REQUEST_TIMEOUT + 30
    )

    results: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as temp:
        work = Path(temp)
        template = snapshot_template(work / "aicoder-template")
        venv_python = create_venv(work / "venv")
        (work / "template").mkdir()
        projects = {
            "template": render_project(
                template,
                work / "template" / "counters",
                {"models": COUNTER_MODELS, "project_name": "Counters"},
                venv_python,
                seed=False,
            )
        }
        projects["plain"] = make_plain_copy(
            projects["template"], work / "plain" / "counters"
        )
        log_dir = work / "logs"
        log_dir.mkdir()

        for workers in WORKER_COUNTS:
            for clients in CLIENT_COUNTS:
                for pattern in PATTERNS:
                    elapsed = time.monotonic() - started
                    if elapsed + worst_case_seconds > args.budget_seconds:
                        print(
                            f"  skipped {pattern}, {workers} worker(s), {clients} clients: "
                            f"it could end after the {args.budget_seconds:.0f} s budget"
                        )
                        continue
                    print(
                        f"  running {pattern}, {workers} worker(s), {clients} clients "
                        f"(at {elapsed:.0f} s)"
                    )
                    results += run_case(
                        projects[pattern],
                        venv_python,
                        pattern,
                        workers,
                        clients,
                        args,
                        log_dir,
                    )
    print()
    print_tables(results)
    print_ratios(results)
    print(f"\ntotal time {time.monotonic() - started:.0f} s; {describe_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
