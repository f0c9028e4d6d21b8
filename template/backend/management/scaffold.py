"""Turn model specs into code: models, schemas, a router and a test per model.

This is the one code path behind the Copier ``models`` answer and the
``create-model`` command. It uses only the standard library.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from management.codegen import models_code, routers_code, schemas_code
from management.codegen.imports import merge_imports
from management.errors import ManagementError
from management.grammar import ModelSpec, parse_models

logger = logging.getLogger(__name__)


@dataclass
class ScaffoldResult:
    """Outcome of a scaffold run: models created, models already defined, files changed."""

    created_models: list[str] = field(default_factory=list)
    existing_models: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)


def known_models(backend_dir: Path) -> dict[str, ModelSpec]:
    """Return the models already in ``models.py``, keyed by class name.

    NOTE: an existing model is assumed to have the integer ``id`` key. A ref to
    an existing model with another primary key would need that key read from
    models.py.
    """
    source = (backend_dir / "models.py").read_text(encoding="utf-8")
    return {name: ModelSpec(name=name) for name in models_code.defined_models(source)}


def scaffold_models(backend_dir: Path, raw_models: object) -> ScaffoldResult:
    """Check ``raw_models`` and write the code of every model not yet defined.

    Either every file is written or, on any error, none is.
    """
    existing = known_models(backend_dir)
    specs = parse_models(raw_models, existing)
    result = ScaffoldResult()
    new_specs = []
    for spec in specs:
        if spec.name in existing:
            result.existing_models.append(spec.name)
        else:
            new_specs.append(spec)
    if not new_specs:
        return result

    every_model = {**existing, **{spec.name: spec for spec in specs}}
    files = render_files(backend_dir, new_specs, every_model)
    write_all(backend_dir, files)
    result.created_models = [spec.name for spec in new_specs]
    result.files_changed = sorted(files)
    return result


def render_files(
    backend_dir: Path, specs: list[ModelSpec], models: dict[str, ModelSpec]
) -> dict[str, str]:
    """Return the new content of every file to write, keyed by path under backend/."""
    models_source = (backend_dir / "models.py").read_text(encoding="utf-8")
    models_source = merge_imports(
        models_source, models_code.required_imports(specs), backend_dir
    )
    models_source = append_blocks(
        models_source, [models_code.render_model(spec, models) for spec in specs]
    )

    schemas_source = (backend_dir / "schemas.py").read_text(encoding="utf-8")
    schemas_source = merge_imports(
        schemas_source, schemas_code.required_imports(specs), backend_dir
    )
    schemas_source = append_blocks(
        schemas_source, [schemas_code.render_schemas(spec, models) for spec in specs]
    )

    files = {"models.py": models_source, "schemas.py": schemas_source}
    for spec in specs:
        name = routers_code.module_name(spec)
        files[f"routers/{name}.py"] = routers_code.render_router(spec, models)
        files[f"tests/test_{name}_api.py"] = routers_code.render_test(spec)
    for relative in files:
        path = backend_dir / relative
        if relative.startswith(("routers/", "tests/")) and path.exists():
            raise ManagementError(
                f"{relative} already exists; move it away or delete it, then run the command again"
            )
    return files


def append_blocks(source: str, blocks: list[str]) -> str:
    return source.rstrip("\n") + "\n\n\n" + "\n\n\n".join(blocks) + "\n"


def write_all(backend_dir: Path, files: dict[str, str]) -> None:
    """Write every file, or restore the old contents if any write fails."""
    originals: dict[Path, str | None] = {}
    try:
        for relative, content in files.items():
            path = backend_dir / relative
            originals[path] = (
                path.read_text(encoding="utf-8") if path.exists() else None
            )
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_text(content, encoding="utf-8")
            os.replace(temporary, path)
    except OSError:
        for path, content in originals.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(content, encoding="utf-8")
        raise
