"""Record the template version a project was just updated to in its db_config.json.

Copier runs this script as a migration after ``copier update`` has merged the
new template version into the project. ``manage.py`` and the generation hook
keep ``db_config.json`` up to date, but no task runs during an update, so
without this step ``template_version`` would keep naming the version the
project was generated from.

The script changes only the ``template_version`` key. It opens no other file,
so ``backend/.env`` and the database stay as they are. It uses only the
standard library, because it runs under Copier's interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

CONFIG_NAME = "db_config.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--template-version",
        required=True,
        help="the template version after the update, as git describe names it, for example v1.1.0",
    )
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=Path.cwd(),
        help="the project's root folder (default: the current folder)",
    )
    return parser.parse_args(argv)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, keeping the file's mode."""
    mode = path.stat().st_mode & 0o777
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def record_version(config_file: Path, version: str) -> str:
    """Set ``template_version`` in ``config_file`` and return a one-line report.

    A missing or unreadable file is reported and left alone, because the
    update is already merged when this runs, and a failure here would only
    make Copier report the update as failed.
    """
    if not config_file.exists():
        return (
            f"warning: {CONFIG_NAME} not found; template version {version} not recorded"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return (
            f"warning: {CONFIG_NAME} could not be read ({error}); "
            f"template version {version} not recorded"
        )
    if not isinstance(config, dict):
        return (
            f"warning: {CONFIG_NAME} does not contain a JSON object; "
            f"template version {version} not recorded"
        )
    if config.get("template_version") == version:
        return f"{CONFIG_NAME} already records template version {version}"
    config["template_version"] = version
    # The same layout as manage.py and the generation hook write.
    write_atomically(config_file, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return f"Recorded template version {version} in {CONFIG_NAME}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"  {record_version(args.project_dir / CONFIG_NAME, args.template_version)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
