"""The database actions an agent or a person can run, each returning one result.

``manage.py`` runs one action per command, and ``manage.py apply`` runs the
actions written as tags in a text. Every action returns the same shape of
result: its type, a status, the files it changed, and the facts that action
produces (revision, operations, rows seeded), plus a short summary for people.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
    if outcome.files_changed:
        summary.append(
            "Next: python manage.py create-crud and python manage.py migrate"
        )
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
