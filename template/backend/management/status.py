"""Report on the project's database, and recommend a move when it has outgrown its tier.

The report gives the tier, where the database is, its size, the rows in each
table and the migration revision. It then watches the database for a short
sample: on SQLite, how often other connections commit and how long it takes
to get the write lock; on a tier 2 schema, how many of the role's connections
are in use. Past a limit below, the report recommends the next tier and the
command that moves the project there.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

# SQLite: past these, writers queue for the single write lock.
SQLITE_MAX_BYTES = 1024**3
SQLITE_MAX_COMMITS_PER_SECOND = 50
SQLITE_MAX_LOCK_WAIT_MS = 200
# Tier 2: past these, the project is better off with a database of its own.
SCHEMA_MAX_BYTES = 10 * 1024**3
SCHEMA_MAX_CONNECTION_SHARE = 0.8
# How often the sample looks at the database.
POLL_SECONDS = 0.01
LOCK_PROBE_SECONDS = 0.1


@dataclass
class Recommendation:
    tier: str
    reasons: list[str]

    @property
    def command(self) -> str:
        return f"python manage.py upgrade --to {self.tier}"


@dataclass
class DatabaseStatus:
    tier: str
    database: str
    size_bytes: int
    rows: dict[str, int]
    revision: str | None
    head: str | None
    sample_seconds: float
    measurements: dict[str, float] = field(default_factory=dict)
    recommendation: Recommendation | None = None

    def as_dict(self) -> dict[str, Any]:
        advice = None
        if self.recommendation is not None:
            advice = {
                "tier": self.recommendation.tier,
                "reasons": self.recommendation.reasons,
                "command": self.recommendation.command,
            }
        return {
            "tier": self.tier,
            "database": self.database,
            "size_bytes": self.size_bytes,
            "rows": self.rows,
            "revision": self.revision,
            "head": self.head,
            "at_head": self.revision == self.head,
            "sample_seconds": self.sample_seconds,
            "measurements": self.measurements,
            "recommendation": advice,
        }


def database_status(sample_seconds: float) -> DatabaseStatus:
    """Describe the database, watching it for ``sample_seconds`` to measure its load."""
    import models
    from database import engine
    from management import project_config
    from management.migrations import current_revision, head_revision
    from management.tier_move import current_tier

    tier = current_tier(engine.url, project_config.read_config())
    with engine.connect() as connection:
        rows = {
            table.name: connection.scalar(sa.select(sa.func.count()).select_from(table))
            for table in models.Base.metadata.sorted_tables
        }
    status = DatabaseStatus(
        tier=tier,
        database=engine.url.render_as_string(hide_password=True),
        size_bytes=0,
        rows=rows,
        revision=current_revision(),
        head=head_revision(),
        sample_seconds=sample_seconds,
    )
    if tier == "sqlite":
        sqlite_status(status, engine)
    else:
        postgres_status(status, engine)
    return status


def sqlite_status(status: DatabaseStatus, engine: sa.Engine) -> None:
    from management.sqlite_files import sqlite_path

    path = sqlite_path()
    if path is None:
        status.database = "sqlite in memory"
        return
    status.database = f"sqlite file {path}"
    status.size_bytes = sum(
        Path(f"{path}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    )
    commits, longest_wait = watch_sqlite(path, status.sample_seconds)
    if status.sample_seconds > 0:
        status.measurements = {
            "commits_per_second": round(commits / status.sample_seconds, 1),
            "longest_write_lock_wait_ms": round(longest_wait * 1000, 1),
        }
    reasons = []
    if status.size_bytes > SQLITE_MAX_BYTES:
        reasons.append(
            f"the database file holds {human_size(status.size_bytes)}, more than "
            f"{human_size(SQLITE_MAX_BYTES)}"
        )
    rate = status.measurements.get("commits_per_second", 0)
    if rate > SQLITE_MAX_COMMITS_PER_SECOND:
        reasons.append(
            f"other connections committed {rate} times a second, more than "
            f"{SQLITE_MAX_COMMITS_PER_SECOND}; SQLite lets one writer in at a time"
        )
    wait = status.measurements.get("longest_write_lock_wait_ms", 0)
    if wait > SQLITE_MAX_LOCK_WAIT_MS:
        reasons.append(
            f"a writer waited {wait} ms for the write lock, more than "
            f"{SQLITE_MAX_LOCK_WAIT_MS} ms"
        )
    if reasons:
        status.recommendation = Recommendation("postgres_schema", reasons)


def watch_sqlite(path: Path, seconds: float) -> tuple[int, float]:
    """Count commits by other connections and time the write lock for ``seconds``.

    ``PRAGMA data_version`` changes when another connection commits; polling
    it misses commits that land between two polls, so the count is a lower
    bound. Every LOCK_PROBE_SECONDS the watcher takes the write lock with
    BEGIN IMMEDIATE and lets it go at once, timing the wait.
    """
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        last_version = connection.execute("PRAGMA data_version").fetchone()[0]
        commits = 0
        longest_wait = 0.0
        started = time.monotonic()
        next_probe = started
        while (now := time.monotonic()) - started < seconds:
            if now >= next_probe:
                connection.execute("BEGIN IMMEDIATE")
                longest_wait = max(longest_wait, time.monotonic() - now)
                connection.execute("ROLLBACK")
                next_probe = time.monotonic() + LOCK_PROBE_SECONDS
            version = connection.execute("PRAGMA data_version").fetchone()[0]
            if version != last_version:
                commits += 1
                last_version = version
            time.sleep(POLL_SECONDS)
    finally:
        connection.close()
    return commits, longest_wait


def postgres_status(status: DatabaseStatus, engine: sa.Engine) -> None:
    with engine.connect() as connection:
        if status.tier == "postgres_database":
            status.size_bytes = connection.scalar(
                sa.text("SELECT pg_database_size(current_database())")
            )
        else:
            status.size_bytes = connection.scalar(
                sa.text(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')"
                )
            )
        limit = connection.scalar(
            sa.text("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user")
        )
        busiest = 0
        started = time.monotonic()
        while True:
            busiest = max(
                busiest,
                connection.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE usename = current_user"
                    )
                ),
            )
            if time.monotonic() - started >= status.sample_seconds:
                break
            time.sleep(LOCK_PROBE_SECONDS)
            connection.rollback()
    status.measurements = {"busiest_connections": busiest}
    if limit is not None and limit > 0:
        status.measurements["connection_limit"] = limit
    if status.tier != "postgres_schema":
        return
    reasons = []
    if status.size_bytes > SCHEMA_MAX_BYTES:
        reasons.append(
            f"the schema holds {human_size(status.size_bytes)}, more than "
            f"{human_size(SCHEMA_MAX_BYTES)}"
        )
    if limit and limit > 0 and busiest >= SCHEMA_MAX_CONNECTION_SHARE * limit:
        reasons.append(
            f"the role had {busiest} of its {limit} connections open; "
            "a database of its own can have more"
        )
    if reasons:
        status.recommendation = Recommendation("postgres_database", reasons)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def summary_lines(status: DatabaseStatus) -> list[str]:
    """Return the report as lines for a person."""
    at_head = "at head" if status.revision == status.head else f"head is {status.head}"
    lines = [
        f"Tier: {status.tier} ({status.database})",
        f"Size: {human_size(status.size_bytes)}",
        f"Revision: {status.revision or 'none'} ({at_head})",
        "Rows: "
        + (
            ", ".join(f"{table} {count}" for table, count in status.rows.items())
            or "no tables"
        ),
    ]
    measured = status.measurements
    if "commits_per_second" in measured:
        lines.append(
            f"Load over {status.sample_seconds:g} s: "
            f"{measured['commits_per_second']} commits a second by other connections, "
            f"longest wait for the write lock {measured['longest_write_lock_wait_ms']} ms"
        )
    if "busiest_connections" in measured:
        limit = measured.get("connection_limit")
        of_limit = f" of {limit}" if limit else ""
        lines.append(
            f"Connections of the project's role: at most {measured['busiest_connections']}"
            f"{of_limit} over {status.sample_seconds:g} s"
        )
    if status.recommendation is None:
        lines.append("Advice: the project fits its tier")
    else:
        lines.append(
            f"Advice: move up to {status.recommendation.tier}, because "
            + "; ".join(status.recommendation.reasons)
        )
        lines.append(f"Run: {status.recommendation.command}")
    return lines
