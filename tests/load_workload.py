"""Concurrent clients mixing reads and writes against a generated project's Counter API.

``tests/test_load.py`` runs this workload and checks the database afterwards;
``bench/load.py`` runs it and prints throughput and latency. Each client is
one thread with one httpx connection. Until the deadline, it picks one
operation at a time at random, by weight:

- ``list``: GET /counters, one page of PAGE_SIZE rows at a random offset;
- ``get``: GET one of the counters that existed before the load;
- ``create``: POST a counter with a name no other request uses;
- ``increment``: GET a counter and its ETag, then PATCH ``value + 1`` with
  ``If-Match: <ETag>``. A 412 means that another client wrote first, so the
  client reads the row again, at most MAX_INCREMENT_ATTEMPTS times.

Every response is counted by request kind and status, and every transport
error is kept with its message. Every PATCH that returns 200 is counted for
its row, and every POST that returns 201 is kept with its values, so the
caller can compare the database with what the clients saw succeed.
"""

from __future__ import annotations

import collections
import random
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

COUNTER_MODELS = [
    {
        "name": "Counter",
        "fields": {
            "name": "string(40) required unique",
            "value": "integer required default=0",
        },
    }
]
COUNTERS_PATH = "/counters"
PAGE_SIZE = 20

# Relative weights of the operations a client picks.
MIXED_WEIGHTS = {"list": 3, "get": 3, "create": 1, "increment": 3}
READ_ONLY_WEIGHTS = {"list": 1, "get": 1}

# Request kinds, each with the statuses that a working API returns.
EXPECTED_STATUSES = {
    "list": {200},
    "get": {200},
    "create": {201},
    "increment GET": {200},
    "increment PATCH": {200, 412},
}
REQUEST_KINDS = tuple(EXPECTED_STATUSES)

MAX_INCREMENT_ATTEMPTS = 50
# Longer than SQLite's 30 s busy timeout in the generated database.py, so a
# write that waits for the lock gets its response before the client times out.
REQUEST_TIMEOUT = 60.0
# A second bound on each client's loop, beside the deadline.
MAX_OPERATIONS_PER_CLIENT = 100_000
START_TIMEOUT = 60.0


@dataclass
class LoadTally:
    """What one client, or all clients together, sent and saw."""

    latencies: dict[str, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    statuses: collections.Counter[tuple[str, int]] = field(
        default_factory=collections.Counter
    )
    transport_errors: list[str] = field(default_factory=list)
    # Row id -> PATCHes that returned 200 for that row.
    increments: collections.Counter[int] = field(default_factory=collections.Counter)
    # Row id -> (name, value) of each row a POST created.
    created: dict[int, tuple[str, int]] = field(default_factory=dict)
    # PATCHes that returned 412, each followed by a new read.
    retries: int = 0
    # Increments stopped after a 412 because the deadline had passed.
    abandoned: int = 0
    # Increments whose PATCH returned 412 on all MAX_INCREMENT_ATTEMPTS attempts.
    exhausted: int = 0
    # Responses that contradict the request, such as a PATCH 200 with a wrong value.
    wrong_responses: list[str] = field(default_factory=list)
    # Exceptions other than transport errors that ended a client's loop.
    client_failures: list[str] = field(default_factory=list)

    def add(self, other: LoadTally) -> None:
        for kind, values in other.latencies.items():
            self.latencies[kind].extend(values)
        self.statuses.update(other.statuses)
        self.transport_errors += other.transport_errors
        self.increments.update(other.increments)
        self.created.update(other.created)
        self.retries += other.retries
        self.abandoned += other.abandoned
        self.exhausted += other.exhausted
        self.wrong_responses += other.wrong_responses
        self.client_failures += other.client_failures


@dataclass
class LoadResult(LoadTally):
    """The merged tally of a run, with its length and the clients still running at its end."""

    clients: int = 0
    seconds: float = 0.0
    unfinished_clients: int = 0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len(self.transport_errors)

    @property
    def successful_increments(self) -> int:
        return sum(self.increments.values())

    @property
    def successful_writes(self) -> int:
        return self.successful_increments + len(self.created)

    @property
    def server_errors(self) -> dict[tuple[str, int], int]:
        return {key: n for key, n in self.statuses.items() if key[1] >= 500}

    @property
    def unexpected_statuses(self) -> dict[tuple[str, int], int]:
        return {
            (kind, status): n
            for (kind, status), n in self.statuses.items()
            if status not in EXPECTED_STATUSES[kind]
        }

    def summary(self) -> str:
        """Return one line with the counts, for test output and failure messages."""
        return (
            f"{self.clients} clients, {self.seconds:.1f} s: {self.requests} requests, "
            f"{len(self.created)} creates and {self.successful_increments} increments "
            f"that succeeded, {self.retries} PATCHes that returned 412, "
            f"{self.abandoned} increments stopped at the deadline, "
            f"{self.exhausted} out of attempts, statuses {dict(self.statuses)}"
        )


class LoadClient:
    """One client's loop: a random operation at a time until the deadline."""

    def __init__(
        self,
        http: httpx.Client,
        number: int,
        row_ids: list[int],
        weights: dict[str, int],
        name_prefix: str,
        deadline: float,
        tally: LoadTally,
    ) -> None:
        self.http = http
        self.number = number
        self.row_ids = row_ids
        self.operations = list(weights)
        self.weights = list(weights.values())
        self.name_prefix = name_prefix
        self.deadline = deadline
        self.tally = tally
        # Seeded per client, so a run repeats the same choices.
        self.rng = random.Random(number)

    def run(self) -> None:
        for step in range(MAX_OPERATIONS_PER_CLIENT):
            if time.monotonic() >= self.deadline:
                return
            operation = self.rng.choices(self.operations, self.weights)[0]
            if operation == "list":
                offset = self.rng.randrange(len(self.row_ids))
                self.send(
                    "list",
                    "GET",
                    COUNTERS_PATH,
                    params={"offset": offset, "limit": PAGE_SIZE},
                )
            elif operation == "get":
                row_id = self.rng.choice(self.row_ids)
                self.send("get", "GET", f"{COUNTERS_PATH}/{row_id}")
            elif operation == "create":
                self.create(step)
            else:
                self.increment(self.rng.choice(self.row_ids))

    def send(self, kind: str, method: str, url: str, **kwargs) -> httpx.Response | None:
        """Send one request and count its status, or return None after a transport error."""
        start = time.perf_counter()
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.TransportError as error:
            self.tally.transport_errors.append(
                f"{kind} {method} {url}: {type(error).__name__}: {error}"
            )
            return None
        finally:
            self.tally.latencies[kind].append(time.perf_counter() - start)
        self.tally.statuses[(kind, response.status_code)] += 1
        return response

    def create(self, step: int) -> None:
        name = f"{self.name_prefix}-{self.number}-{step}"
        value = self.rng.randrange(1000)
        response = self.send(
            "create", "POST", COUNTERS_PATH, json={"name": name, "value": value}
        )
        if response is None or response.status_code != 201:
            return
        row = response.json()
        if (row["name"], row["value"]) != (name, value):
            self.tally.wrong_responses.append(
                f"POST {name!r} with value {value} returned {row}"
            )
        self.tally.created[row["id"]] = (name, value)

    def increment(self, row_id: int) -> None:
        """Add one to the row's value with If-Match, reading again after each 412."""
        url = f"{COUNTERS_PATH}/{row_id}"
        for attempt in range(MAX_INCREMENT_ATTEMPTS):
            if attempt and time.monotonic() >= self.deadline:
                self.tally.abandoned += 1
                return
            current = self.send("increment GET", "GET", url)
            if current is None or current.status_code != 200:
                return
            value = current.json()["value"]
            updated = self.send(
                "increment PATCH",
                "PATCH",
                url,
                json={"value": value + 1},
                headers={"If-Match": current.headers["ETag"]},
            )
            if updated is None:
                return
            if updated.status_code == 200:
                self.tally.increments[row_id] += 1
                if updated.json()["value"] != value + 1:
                    self.tally.wrong_responses.append(
                        f"PATCH {url} to {value + 1} returned {updated.json()}"
                    )
                return
            if updated.status_code != 412:
                return
            self.tally.retries += 1
        self.tally.exhausted += 1


def run_load(
    base_url: str,
    row_ids: list[int],
    *,
    clients: int,
    seconds: float,
    weights: dict[str, int],
    name_prefix: str = "load",
) -> LoadResult:
    """Run ``clients`` client threads for ``seconds`` and return their merged tally.

    ``row_ids`` are the counters that ``get`` and ``increment`` pick from.
    ``name_prefix`` starts the names of created rows and must differ between
    runs on the same database, because names are unique. Each client starts no
    operation after the deadline, and a request in flight then ends within
    REQUEST_TIMEOUT, so the run ends by itself.
    """
    if not row_ids:
        raise ValueError("run_load needs at least one existing row id")
    tallies = [LoadTally() for _ in range(clients)]
    start_barrier = threading.Barrier(clients + 1)
    schedule = {"deadline": 0.0}

    def client_thread(number: int) -> None:
        tally = tallies[number]
        try:
            with httpx.Client(
                base_url=base_url, timeout=REQUEST_TIMEOUT, trust_env=False
            ) as http:
                start_barrier.wait(timeout=START_TIMEOUT)
                LoadClient(
                    http,
                    number,
                    row_ids,
                    weights,
                    name_prefix,
                    schedule["deadline"],
                    tally,
                ).run()
        except Exception as error:
            # Kept, so that the caller reports it instead of a thread warning.
            tally.client_failures.append(
                f"client {number}: {type(error).__name__}: {error}"
            )

    threads = [
        threading.Thread(target=client_thread, args=(number,), daemon=True)
        for number in range(clients)
    ]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    schedule["deadline"] = start + seconds
    start_barrier.wait(timeout=START_TIMEOUT)
    join_deadline = schedule["deadline"] + REQUEST_TIMEOUT + 10
    for thread in threads:
        thread.join(timeout=max(0.0, join_deadline - time.monotonic()))

    result = LoadResult(clients=clients, seconds=time.monotonic() - start)
    result.unfinished_clients = sum(thread.is_alive() for thread in threads)
    for tally in tallies:
        result.add(tally)
    return result


def expected_counters(
    initial: dict[int, tuple[str, int]], result: LoadResult
) -> dict[int, tuple[str, int]]:
    """Return the rows the database must hold after the run, by id: (name, value)."""
    expected = {**initial, **result.created}
    for row_id, count in result.increments.items():
        name, value = expected[row_id]
        expected[row_id] = (name, value + count)
    return expected


def differences(
    expected: dict[int, tuple[str, int]], actual: dict[int, tuple[str, int]]
) -> list[str]:
    """Describe each row whose name or value differs, or that only one side has."""
    lines = []
    for row_id in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(row_id), actual.get(row_id)
        if want != got:
            lines.append(f"id {row_id}: expected {want}, database has {got}")
    return lines


def read_sqlite_counters(database: Path) -> dict[int, tuple[str, int]]:
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("SELECT id, name, value FROM counter").fetchall()
    return {row_id: (name, value) for row_id, name, value in rows}


def read_postgres_counters(url: str) -> dict[int, tuple[str, int]]:
    """Read the counters through ``url``, a project or admin URL in SQLAlchemy or libpq form."""
    libpq_url = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq_url) as connection:
        rows = connection.execute("SELECT id, name, value FROM counter").fetchall()
    return {row_id: (name, value) for row_id, name, value in rows}


def project_database_url(backend: Path) -> str:
    """Return DATABASE_URL from the project's ``backend/.env``."""
    for line in (backend / ".env").read_text(encoding="utf-8").splitlines():
        if line.startswith("DATABASE_URL="):
            return line.split("=", 1)[1]
    raise ValueError(f"{backend / '.env'} has no DATABASE_URL line")


def hot_rows_seed(count: int) -> list[dict[str, object]]:
    """Return the rows of ``seeds/Counter.json``: distinct values, so a mixed-up row shows."""
    return [
        {"name": f"hot-{index:02d}", "value": index * 100} for index in range(count)
    ]
