"""The database actions an agent or a person can run, each returning one result.

``manage.py`` runs one action per command, and ``manage.py apply`` runs the
actions written as tags in a text. Every action returns the same shape of
result: its type, a status, the files it changed, and the facts that action
produces (revision, operations, rows seeded), plus a short summary for people.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from management.errors import ManagementError, database_errors, describe_database_error
from management.tags import ActionTag, parse_actions

if TYPE_CHECKING:
    from management.tier_move import RowProgress

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parent.parent


def action_result(action: str, **details: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "type": action,
        "status": "ok",
        "files_changed": [],
        "summary": [],
    }
    result.update(details)
    return result


def create_database_model(
    raw_models: object, *, replace: bool = False
) -> dict[str, Any]:
    """Write models and their schemas; see ``scaffold.create_models``."""
    from management.scaffold import create_models

    outcome = create_models(BACKEND_DIR, raw_models, replace=replace)
    summary = []
    for change in outcome.models:
        if change.status == "created":
            summary.append(f"Created model {change.name}")
        elif change.status == "updated":
            added = ", ".join(change.added) or "no fields"
            summary.append(f"Updated model {change.name}: added {added}")
            summary += [f"  rewrote {item['name']}" for item in change.replaced]
            summary += [f"  removed {item['name']}" for item in change.removed]
        else:
            summary.append(f"Model {change.name} already matches; nothing changed")
    created = [change.name for change in outcome.models if change.status == "created"]
    if created:
        models = " ".join(f"--model {name}" for name in created)
        summary.append(
            f"Next: python manage.py create-crud {models}, then python manage.py migrate"
        )
    elif outcome.files_changed:
        summary.append("Next: python manage.py migrate")
    return action_result(
        "create_database_model",
        files_changed=[f"backend/{path}" for path in outcome.files_changed],
        models=[change.__dict__ for change in outcome.models],
        summary=summary,
    )


def create_crud_operations(names: list[str] | None = None) -> dict[str, Any]:
    """Write a router and API tests for each named model, or for every model."""
    from management.scaffold import create_crud

    outcome = create_crud(BACKEND_DIR, names)
    summary = []
    for change in outcome.models:
        if change.status == "created":
            summary.append(f"Created the router and tests of {change.name}")
        else:
            summary.append(f"{change.name} already has a router; nothing changed")
    return action_result(
        "create_crud_operations",
        files_changed=[f"backend/{path}" for path in outcome.files_changed],
        models=[change.name for change in outcome.models],
        summary=summary,
    )


def migrate_database(
    message: str | None = None, *, allow_destructive: bool = False
) -> dict[str, Any]:
    """Add a revision for model changes and apply it; see ``migrations.migrate``."""
    from management import project_config
    from management.migrations import migrate

    outcome = migrate(message, allow_destructive=allow_destructive)
    files = []
    if outcome.created_revision:
        summary = [f"Created revision {outcome.created_revision} and upgraded to it"]
        summary += [f"  {operation}" for operation in outcome.operations]
        files.append(outcome.created_file)
    elif outcome.applied:
        summary = [f"Upgraded to {outcome.revision}"]
    else:
        summary = [
            f"Models and database match at revision {outcome.revision}; no revision created"
        ]
    if project_config.CONFIG_FILE.exists():
        project_config.write_config({"revision": outcome.revision})
    return action_result(
        "migrate_database",
        files_changed=files,
        revision=outcome.revision,
        created_revision=outcome.created_revision,
        operations=outcome.operations,
        backup=outcome.backup,
        summary=summary,
    )


def seed_database(
    *,
    model: str | None = None,
    count: int | None = None,
    file: str | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """Insert or update rows from seed files, a text body, or generated values."""
    from management import seeding

    return seeding.seed_database(model=model, count=count, file=file, body=body)


def upgrade_database(tier: str, progress: RowProgress | None = None) -> dict[str, Any]:
    """Move the project and its data up to ``tier``; see ``tier_move``."""
    from management.tier_move import move_up

    result = move_up(tier, progress)
    rows = sum(result.rows.values())
    backup_note = (
        "The SQLite database is kept read-only in"
        if result.source_tier == "sqlite"
        else "The old schema is kept as a read-only SQL dump in"
    )
    return action_result(
        "upgrade_database",
        files_changed=["backend/.env", "db_config.json"],
        source_tier=result.source_tier,
        target_tier=result.target_tier,
        rows=result.rows,
        backup=result.backup,
        warnings=result.warnings,
        summary=[
            f"Moved {rows} rows in {len(result.rows)} tables from {result.source_tier} "
            f"to {result.target_tier}; row counts and digests match",
            f"{backup_note} {result.backup}",
            *(f"warning: {warning}" for warning in result.warnings),
            "Restart the app so that it connects to the new database",
        ],
    )


def run_atomically(
    action: Callable[[], dict[str, Any]], *, uses_database: bool
) -> dict[str, Any]:
    """Run an action; if it raises, restore the files and database it may have changed.

    Actions that only write code pass ``uses_database=False``, so they run
    without SQLAlchemy, as the generation hook needs.
    """
    from management.snapshot import ProjectSnapshot

    forget_application_modules()
    database = None
    if uses_database:
        from management.sqlite_files import sqlite_path

        database = sqlite_path()
    with ProjectSnapshot(BACKEND_DIR, database):
        return action()


# Modules generated from the models; an earlier action in the same process may
# have rewritten them.
APPLICATION_MODULES = ("models", "schemas", "crud", "main", "routers")


def forget_application_modules() -> None:
    """Drop the application's modules from the import cache, so the next import reads the files."""
    for name in list(sys.modules):
        if name.split(".")[0] in APPLICATION_MODULES:
            del sys.modules[name]


# Actions whose database is copied first and put back if they fail. The
# create_* actions write code only, and upgrade_database guards its own data.
DATABASE_SNAPSHOT_ACTIONS = {"migrate_database", "seed_database"}


def run_tag(tag: ActionTag) -> dict[str, Any]:
    """Carry out one parsed action tag."""
    attributes = tag.attributes
    if tag.type == "create_database_model":
        lines = tag.body.splitlines() if tag.body else attributes["fields"].split(";")
        fields = [
            line.strip()
            for line in lines
            if line.strip() and not line.strip().startswith("#")
        ]
        return create_database_model(
            [{"name": attributes["name"], "fields": fields}],
            replace=attributes.get("replace") == "true",
        )
    if tag.type == "create_crud_operations":
        return create_crud_operations([attributes["model"]])
    if tag.type == "migrate_database":
        return migrate_database(
            attributes.get("message"),
            allow_destructive=attributes.get("allow_destructive") == "true",
        )
    if tag.type == "seed_database":
        count = attributes.get("count")
        return seed_database(
            model=attributes.get("model"),
            count=int(count) if count is not None else None,
            file=attributes.get("file"),
            body=tag.body or None,
        )
    if tag.type == "upgrade_database":
        return upgrade_database(attributes["tier"])
    raise ManagementError(f"action {tag.type} has no handler in this project")


def apply_text(text: str) -> dict[str, Any]:
    """Carry out every action tag in ``text``, in order, stopping at the first failure.

    Each action is atomic: a failed one is undone, and those before it stay.
    Actions after a failure are reported as skipped.
    """
    tags = parse_actions(text)
    results: list[dict[str, Any]] = []
    failed = False
    for tag in tags:
        if failed:
            results.append({"type": tag.type, "line": tag.line, "status": "skipped"})
            continue
        try:
            result = run_atomically(
                lambda tag=tag: run_tag(tag),
                uses_database=tag.type in DATABASE_SNAPSHOT_ACTIONS,
            )
        except (ManagementError, *database_errors()) as error:
            message = (
                str(error)
                if isinstance(error, ManagementError)
                else describe_database_error(error)
            )
            results.append(
                {
                    "type": tag.type,
                    "line": tag.line,
                    "status": "error",
                    "message": message,
                }
            )
            failed = True
            continue
        results.append({**result, "line": tag.line})
    summary = []
    for number, result in enumerate(results, start=1):
        header = (
            f"[{number}] {result['type']} (line {result['line']}): {result['status']}"
        )
        summary.append(header)
        summary += [f"    {line}" for line in result.get("summary", [])]
        if result["status"] == "error":
            summary.append(f"    error: {result['message']}")
    return {
        "status": "error" if failed else "ok",
        "actions": results,
        "summary": summary,
    }
