"""The ``manage.py`` command line: one subcommand per database action.

Every command prints a short summary, or with ``--json`` one JSON document.
Exit status: 0 on success, 1 when an action failed, 2 for invalid usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from management.errors import (
    ManagementError,
    UsageError,
    database_errors,
    describe_database_error,
)

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parent.parent
SAMPLE_ROWS = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="manage.py", description="Database actions for this project."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    # --json is accepted after the command name too; SUPPRESS keeps a value
    # given before the command.
    json_option = argparse.ArgumentParser(add_help=False)
    json_option.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser(
        "create-model",
        parents=[json_option],
        help="add a model with its schemas, router and tests",
        description="Add models written in the field grammar (see AGENTS.md).",
    )
    create.add_argument("--name", help="PascalCase model name, for example Book")
    create.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="'NAME: TYPE [MODIFIER ...]'",
        help="one field, for example 'title: string(200) required'; repeatable",
    )
    create.add_argument(
        "--replace",
        action="store_true",
        help="rewrite fields whose code differs from the spec and remove fields it leaves out",
    )
    create.add_argument(
        "--spec",
        type=Path,
        metavar="FILE",
        help="JSON file with a list of model specs ({name, fields}) instead of --name",
    )

    provision = commands.add_parser(
        "provision",
        parents=[json_option],
        help="create the project's PostgreSQL role and schema or database",
        description=(
            "Provision the project on the PostgreSQL server in ADMIN_DATABASE_URL "
            "and point backend/.env at it. Running it again changes nothing."
        ),
    )
    provision.add_argument(
        "--tier",
        choices=["postgres_schema", "postgres_database"],
        help="tier 2 (a schema on a shared database) or tier 3 (a database); default: as in db_config.json",
    )
    deprovision = commands.add_parser(
        "deprovision",
        parents=[json_option],
        help="remove the project's PostgreSQL role, schema or database and data",
    )
    deprovision.add_argument(
        "--yes",
        action="store_true",
        help="confirm: every row of the project is deleted",
    )

    upgrade = commands.add_parser(
        "upgrade",
        parents=[json_option],
        help="move the project and its data up a tier",
        description=(
            "Move from SQLite to PostgreSQL, or from a schema on the shared server "
            "to a database of its own. Provision the target with ADMIN_DATABASE_URL, "
            "copy every row while writes wait, verify it, then point backend/.env at "
            "it. Any failure leaves the project on its old tier."
        ),
    )
    upgrade.add_argument(
        "--to",
        required=True,
        choices=["postgres_schema", "postgres_database"],
        help="the tier to move to",
    )

    backup = commands.add_parser(
        "backup",
        parents=[json_option],
        help="write a consistent backup of the database into backups/",
        description=(
            "SQLite: VACUUM INTO a new file; PostgreSQL: pg_dump of the project's "
            "schema. Keeps the newest BACKUP_RETENTION manual backups (default 10)."
        ),
    )
    backup.add_argument(
        "--keep",
        type=positive_count,
        metavar="N",
        help="keep the newest N manual backups (default: BACKUP_RETENTION or 10)",
    )
    commands.add_parser(
        "backups",
        parents=[json_option],
        help="list the backups in backups/, newest first",
    )
    restore = commands.add_parser(
        "restore",
        parents=[json_option],
        help="check a backup, back up the current data, then restore the backup",
        description=(
            "The current data is backed up first, and the backup's data replaces "
            "it in one transaction."
        ),
    )
    restore.add_argument("file", help="a file from manage.py backups, or its path")

    status = commands.add_parser(
        "status",
        parents=[json_option],
        help="show the tier, size, row counts and revision, and whether to move up",
        description=(
            "Describe the database, then watch its load for a moment (commits and "
            "write-lock waits on SQLite, connections on PostgreSQL) and recommend "
            "the next tier when the project has outgrown its own."
        ),
    )
    status.add_argument(
        "--sample",
        type=sample_seconds,
        default=1.0,
        metavar="SECONDS",
        help="how long to watch the load, 0 to 60 seconds (default: 1)",
    )

    crud = commands.add_parser(
        "create-crud",
        parents=[json_option],
        help="add the router and API tests of a model",
        description="Write routers/<model>.py and tests/test_<model>_api.py; main.py mounts the router.",
    )
    crud.add_argument(
        "--model", action="append", default=[], help="model name; repeatable"
    )
    crud.add_argument("--all", action="store_true", help="every model in models.py")

    init = commands.add_parser(
        "init",
        parents=[json_option],
        help="create the database, its first migration and db_config.json",
        description="Set up the database. Running it again changes nothing.",
    )
    init.add_argument(
        "--tier",
        help="database tier to record in db_config.json (default: as recorded, or sqlite)",
    )
    init.add_argument(
        "--seed-sample",
        action="store_true",
        help=f"insert {SAMPLE_ROWS} sample rows into each empty table",
    )

    migrate = commands.add_parser(
        "migrate",
        parents=[json_option],
        help="add a revision for model changes and upgrade to head",
    )
    migrate.add_argument("--message", "-m", help="revision message")
    migrate.add_argument(
        "--allow-destructive",
        action="store_true",
        help="allow dropping tables or columns and narrowing column types",
    )

    seed = commands.add_parser(
        "seed",
        parents=[json_option],
        help="insert or update rows from backend/seeds/, or generate sample rows",
        description=(
            "Without options, load every file in backend/seeds/. Seeding twice "
            "adds nothing: rows match existing ones by primary key or a unique field."
        ),
    )
    seed.add_argument(
        "--model", help="model to seed (default: the file's name, or every model)"
    )
    seed.add_argument("--file", help="one file in backend/seeds/, such as Book.json")
    seed.add_argument(
        "--count",
        type=int,
        help="generate sample rows until each table (or --model's) contains this many",
    )

    apply = commands.add_parser(
        "apply",
        parents=[json_option],
        help="carry out the <action> tags in a text, in order",
        description="Read a text (a file, or standard input) and run each action tag in it.",
    )
    apply.add_argument(
        "file",
        nargs="?",
        default="-",
        help="text file; - or nothing for standard input",
    )

    commands.add_parser(
        "check",
        parents=[json_option],
        help="exit 1 when the models and the database differ",
    )
    return parser


# Commands that change the project; a failure undoes everything they changed.
# apply makes each of its actions atomic by itself.
ACTION_COMMANDS = {"create-model", "create-crud", "migrate", "seed"}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "create-model": run_create_model,
        "create-crud": run_create_crud,
        "init": run_init,
        "migrate": run_migrate,
        "seed": run_seed,
        "check": run_check,
        "apply": run_apply,
        "provision": run_provision,
        "deprovision": run_deprovision,
        "upgrade": run_upgrade,
        "status": run_status,
        "backup": run_backup,
        "backups": run_backups,
        "restore": run_restore,
    }
    try:
        if args.command in ACTION_COMMANDS:
            from management.actions import run_atomically

            result = run_atomically(
                lambda: handlers[args.command](args),
                uses_database=args.command in {"migrate", "seed"},
            )
        else:
            result = handlers[args.command](args)
    except ManagementError as error:
        report(
            args, {"command": args.command, "status": "error", "message": str(error)}
        )
        return error.exit_code
    except database_errors() as error:
        message = describe_database_error(error)
        report(args, {"command": args.command, "status": "error", "message": message})
        return 1
    except RuntimeError as error:
        # database.py raises DatabaseConfigError while it is being imported, so
        # the class cannot be imported here to catch it by name.
        if type(error).__name__ != "DatabaseConfigError":
            raise
        report(
            args, {"command": args.command, "status": "error", "message": str(error)}
        )
        return UsageError.exit_code
    result = {"command": args.command, **result}
    report(args, result)
    return 0 if result.get("status") == "ok" else 1


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return
    for line in result.get("summary", []):
        print(line)
    if result.get("status") == "error" and "message" in result:
        print(f"error: {result['message']}", file=sys.stderr)


def run_create_model(args: argparse.Namespace) -> dict[str, Any]:
    from management.actions import create_database_model

    if args.spec and (args.name or args.field):
        raise UsageError("give either --spec FILE or --name with --field, not both")
    if args.spec:
        try:
            raw_models = json.loads(args.spec.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise UsageError(
                f"cannot read model specs from {args.spec}: {error}"
            ) from None
    elif args.name:
        raw_models = [{"name": args.name, "fields": args.field}]
    else:
        raise UsageError("give --name NAME with --field 'name: type', or --spec FILE")
    return create_database_model(raw_models, replace=args.replace)


def run_create_crud(args: argparse.Namespace) -> dict[str, Any]:
    from management.actions import create_crud_operations

    if args.all == bool(args.model):
        raise UsageError(
            "give --model NAME (repeatable) or --all, not both and not neither"
        )
    return create_crud_operations(None if args.all else args.model)


def run_init(args: argparse.Namespace) -> dict[str, Any]:
    from management import project_config
    from management.migrations import current_revision, head_revision, migrate
    from management.sqlite_files import remove_sqlite_files, sqlite_path

    tier = args.tier or project_config.read_config().get("tier", "sqlite")
    if tier not in project_config.TIERS:
        raise UsageError(
            f"tier {tier!r} is not one of {', '.join(project_config.TIERS)}; "
            "pass --tier with one of them"
        )
    database_path = sqlite_path()
    created_file = database_path is not None and not database_path.exists()
    already_set_up = (
        not created_file
        and project_config.CONFIG_FILE.exists()
        and head_revision() is not None
        and current_revision() == head_revision()
    )
    if already_set_up:
        from management.migrations import pending_operations

        if not pending_operations():
            revision = current_revision()
            return {
                "command": "init",
                "status": "ok",
                "changed": False,
                "revision": revision,
                "summary": [
                    f"Database already set up at revision {revision}; nothing to do"
                ],
            }
    try:
        result = migrate()
        seeded = {}
        if args.seed_sample:
            from management.seeding import seed_sample_rows

            seeded = seed_sample_rows(SAMPLE_ROWS)
    except Exception:
        # A database file this run created is removed, so a rerun starts clean.
        if created_file:
            remove_sqlite_files(database_path)
        raise
    config = write_database_config(tier, result.revision)
    summary = [
        f"Database ready at revision {result.revision} ({config.get('database_file') or config.get('database')})"
    ]
    summary += [f"Seeded {count} rows into {table}" for table, count in seeded.items()]
    return {
        "command": "init",
        "status": "ok",
        "changed": True,
        "revision": result.revision,
        "created_revision": result.created_revision,
        "operations": result.operations,
        "rows_seeded": seeded,
        "summary": summary,
    }


def run_migrate(args: argparse.Namespace) -> dict[str, Any]:
    from management.actions import migrate_database

    return migrate_database(args.message, allow_destructive=args.allow_destructive)


def run_seed(args: argparse.Namespace) -> dict[str, Any]:
    from management.actions import seed_database

    if args.count is not None and args.count < 1:
        raise UsageError(f"--count must be at least 1, got {args.count}")
    if args.count is not None and args.file:
        raise UsageError("give --count or --file, not both")
    return seed_database(model=args.model, count=args.count, file=args.file)


def run_provision(args: argparse.Namespace) -> dict[str, Any]:
    from management import project_config
    from management.env_file import write_env_file
    from management.provisioning import provision

    config = project_config.read_config()
    tier = args.tier or config.get("tier")
    if tier not in ("postgres_schema", "postgres_database"):
        raise UsageError(
            f"tier {tier!r} has nothing to provision; pass --tier postgres_schema "
            "or --tier postgres_database"
        )
    done = config.get("provisioning")
    if done and done.get("tier") == tier:
        return {
            "status": "ok",
            "changed": False,
            "provisioning": done,
            "summary": [
                f"Already provisioned: role {done['role']}, database {done['database']}; nothing to do"
            ],
        }
    slug = config.get("project") or BACKEND_DIR.parent.name
    result = provision(tier, slug)
    write_env_file(result.url, "postgresql")
    details = result.public_details()
    project_config.write_config(
        {
            "tier": tier,
            "provisioning": details,
            "database_type": "postgresql",
            "database": result.database,
            "schema": result.schema,
            "host": result.host,
            "port": result.port,
        }
    )
    return {
        "status": "ok",
        "changed": True,
        "provisioning": details,
        "files_changed": ["backend/.env", "db_config.json"],
        "summary": [
            f"Created role {result.role} and schema {result.schema} in database {result.database}",
            "backend/.env now points at it; next: python manage.py init",
        ],
    }


def run_deprovision(args: argparse.Namespace) -> dict[str, Any]:
    from management import project_config
    from management.provisioning import deprovision

    config = project_config.read_config()
    details = config.get("provisioning")
    if not details:
        raise UsageError("db_config.json records no provisioning; nothing to remove")
    if not args.yes:
        raise UsageError(
            f"deprovision deletes role {details['role']} and every row of the project "
            f"in database {details['database']}; pass --yes to confirm"
        )
    steps = deprovision(details)
    project_config.write_config(
        {"provisioning": None, "deprovisioned_at": project_config.utc_timestamp()}
    )
    return {"status": "ok", "summary": steps}


def run_upgrade(args: argparse.Namespace) -> dict[str, Any]:
    from management.actions import upgrade_database
    from management.progress import RowProgressBar

    with RowProgressBar(f"Copying to {args.to}") as progress:
        return upgrade_database(args.to, progress)


def positive_count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a whole number of backups to keep, 1 or more"
        )
    return int(value)


def run_backup(args: argparse.Namespace) -> dict[str, Any]:
    from management.backups import take_backup

    backup = take_backup(keep=args.keep).as_dict()
    return {
        "status": "ok",
        "backup": backup,
        "files_changed": [backup["file"]],
        "summary": [f"Backed up the database to {backup['file']}"],
    }


def run_backups(args: argparse.Namespace) -> dict[str, Any]:
    from management.backups import list_backups

    backups = [backup.as_dict() for backup in list_backups()]
    summary = [
        f"{backup['file']}  {backup['kind']}  {backup['size_bytes']} bytes  "
        f"{backup['taken_at']}"
        for backup in backups
    ] or ["No backups yet; make one with python manage.py backup"]
    return {"status": "ok", "backups": backups, "summary": summary}


def run_restore(args: argparse.Namespace) -> dict[str, Any]:
    from management.backups import restore_backup

    outcome = restore_backup(args.file)
    summary = [
        f"Restored {outcome['restored']}; the data it replaced is in "
        f"{outcome['safety_backup']['file']}"
    ]
    if outcome["revision"] != outcome["head"]:
        summary.append(
            f"The database is at revision {outcome['revision']}, not at head "
            f"{outcome['head']}; run python manage.py migrate"
        )
    return {"status": "ok", **outcome, "summary": summary}


def sample_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 60:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of seconds from 0 to 60, for example 2"
        )
    return seconds


def run_status(args: argparse.Namespace) -> dict[str, Any]:
    from management.status import database_status, summary_lines

    status = database_status(args.sample)
    return {"status": "ok", **status.as_dict(), "summary": summary_lines(status)}


def run_apply(args: argparse.Namespace) -> dict[str, Any]:
    from management.actions import apply_text

    if args.file == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot read {args.file}: {error.strerror}") from None
    return apply_text(text)


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    from management.migrations import check

    problems = check()
    if problems:
        return {
            "command": "check",
            "status": "error",
            "message": f"models and database differ: {problems[0]}; run python manage.py migrate",
            "differences": problems,
        }
    return {
        "command": "check",
        "status": "ok",
        "summary": ["Models and database match"],
    }


def write_database_config(tier: str, revision: str | None) -> dict[str, Any]:
    from database import engine
    from management import project_config

    details = project_config.describe_database(engine.url, BACKEND_DIR)
    return project_config.write_config({"tier": tier, "revision": revision, **details})
