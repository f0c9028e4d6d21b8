"""Turn model specs into code: models and schemas, then a router and tests per model.

This is the one code path behind the Copier ``models`` answer, the
``create-model`` and ``create-crud`` commands and the agent's actions. It uses
only the standard library, and it edits existing files through their syntax
tree, so code written by hand in them stays.
"""

from __future__ import annotations

import ast
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from management.codegen import models_code, routers_code, schemas_code
from management.codegen.classes import ClassChanges, update_class
from management.codegen.imports import merge_imports
from management.errors import ManagementError, UsageError
from management.grammar import ModelSpec, association_table_name, parse_models

logger = logging.getLogger(__name__)


@dataclass
class ModelChange:
    """Changes one model's spec made to the code."""

    name: str
    status: str  # created, updated or unchanged
    added: list[str] = field(default_factory=list)
    replaced: list[dict[str, str]] = field(default_factory=list)
    removed: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ScaffoldResult:
    """Outcome of a scaffold run: one entry per model and the files written."""

    models: list[ModelChange] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)


def read_models(backend_dir: Path) -> dict[str, ModelSpec]:
    """Return the models defined in backend/models.py, keyed by class name."""
    source = (backend_dir / "models.py").read_text(encoding="utf-8")
    return models_code.defined_models(source)


def create_models(
    backend_dir: Path, raw_models: object, *, replace: bool = False
) -> ScaffoldResult:
    """Write models and schemas for ``raw_models``: new classes, or new fields.

    A model that exists already gets the fields it lacks. A field whose code
    differs from the spec is rewritten, and fields the spec leaves out are
    removed, only with ``replace``; otherwise ManagementError lists them and
    nothing is written. Either every file is written or none is.
    """
    existing = read_models(backend_dir)
    specs = parse_models(raw_models, existing)
    every_model = {**existing, **{spec.name: spec for spec in specs}}
    models_source = (backend_dir / "models.py").read_text(encoding="utf-8")
    schemas_source = (backend_dir / "schemas.py").read_text(encoding="utf-8")
    result = ScaffoldResult()

    for spec in specs:
        if spec.name not in existing:
            models_source = append_blocks(
                models_source, [models_code.render_model(spec, every_model)]
            )
            schemas_source = append_blocks(
                schemas_source, [schemas_code.render_schemas(spec, every_model)]
            )
            result.models.append(
                ModelChange(spec.name, "created", added=[f.name for f in spec.fields])
            )
            continue
        models_source, model_changes = update_model(
            models_source, spec, every_model, replace
        )
        schemas_source, schema_changes = update_schemas(
            schemas_source, spec, every_model, replace
        )
        result.models.append(
            summarize_changes(spec.name, model_changes, schema_changes)
        )

    conflicts = [change for change in result.models if change.replaced and not replace]
    if conflicts:
        raise ManagementError(describe_conflicts(conflicts))

    changed_specs = [
        spec
        for spec, change in zip(specs, result.models, strict=True)
        if change.status != "unchanged"
    ]
    if not changed_specs:
        return result
    models_source = merge_imports(
        models_source,
        models_code.required_imports(changed_specs, every_model),
        backend_dir,
    )
    schemas_source = merge_imports(
        schemas_source,
        schemas_code.required_imports(changed_specs, every_model),
        backend_dir,
    )
    files = {"models.py": models_source, "schemas.py": schemas_source}
    write_all(backend_dir, files)
    result.files_changed = sorted(files)
    return result


def update_model(
    source: str, spec: ModelSpec, models: dict[str, ModelSpec], replace: bool
) -> tuple[str, ClassChanges]:
    """Add the fields a model lacks, with any association table a new many() needs."""
    members = models_code.model_members(spec, models)
    source, changes = update_class(source, spec.name, members, replace=replace)
    module_names = top_level_names(source)
    tables = [
        (
            association_table_name(spec, field),
            models_code.render_association_table(spec, field, models),
        )
        for field in spec.fields
        if field.kind == "many"
    ]
    missing = [block for name, block in tables if name not in module_names]
    if missing:
        source = insert_before_class(source, spec.name, missing)
    return source, changes


def update_schemas(
    source: str, spec: ModelSpec, models: dict[str, ModelSpec], replace: bool
) -> tuple[str, ClassChanges]:
    """Bring the model's Create, Update, Read and Query schemas in line with its spec."""
    module_names = top_level_names(source)
    aliases = [
        alias
        for alias in schemas_code.enum_aliases(spec)
        if alias.name not in module_names
    ]
    if aliases:
        source = insert_before_class(
            source, f"{spec.name}Create", ["\n".join(a.lines) for a in aliases]
        )
    combined = ClassChanges()
    for kind, members in schemas_code.schema_members(spec, models).items():
        source, changes = update_class(
            source, f"{spec.name}{kind}", members, replace=replace
        )
        combined.added += changes.added
        combined.replaced += changes.replaced
        combined.removed += changes.removed
    return source, combined


def summarize_changes(
    name: str, model: ClassChanges, schemas: ClassChanges
) -> ModelChange:
    changed = model.changed or schemas.changed
    # A field differs when its model attribute differs; schema-only differences
    # come from hand edits of schemas.py and are reported with the model's name.
    replaced = model.replaced or schemas.replaced
    removed = model.removed or schemas.removed
    return ModelChange(
        name,
        "updated" if changed else "unchanged",
        added=model.added,
        replaced=replaced,
        removed=removed,
    )


def describe_conflicts(conflicts: list[ModelChange]) -> str:
    """Return one line listing each differing field's current and requested code."""
    parts = []
    for change in conflicts:
        for item in change.replaced:
            parts.append(
                f"model {change.name}, field {item['name']}: the code is "
                f"`{one_line(item['old'])}` but the spec gives `{one_line(item['new'])}`"
            )
    return (
        "; ".join(parts)
        + "; nothing was changed. To rewrite these fields pass --replace"
        ' (replace="true" in an action tag) and send every field of the model,'
        " because --replace also removes the fields the spec leaves out; or send"
        " the fields as they are now"
    )


def one_line(code: str) -> str:
    return " ".join(code.split())


def create_crud(backend_dir: Path, names: list[str] | None = None) -> ScaffoldResult:
    """Write a router and API tests for each named model, or for every model."""
    models = read_models(backend_dir)
    if names is None:
        names = list(models)
    unknown = [name for name in names if name not in models]
    if unknown:
        raise UsageError(
            f"model {unknown[0]} is not defined in models.py; create it first with "
            f"create-model, or use one of {', '.join(models) or 'no models yet'}"
        )
    result = ScaffoldResult()
    files = {}
    for name in names:
        spec = models[name]
        module = routers_code.module_name(spec)
        router_path = f"routers/{module}.py"
        test_path = f"tests/test_{module}_api.py"
        if (backend_dir / router_path).exists():
            result.models.append(ModelChange(name, "unchanged"))
            continue
        files[router_path] = routers_code.render_router(spec, models)
        if not (backend_dir / test_path).exists():
            files[test_path] = routers_code.render_test(spec)
        result.models.append(ModelChange(name, "created"))
    if files:
        write_all(backend_dir, files)
    result.files_changed = sorted(files)
    return result


def top_level_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            names.update(
                target.id for target in node.targets if isinstance(target, ast.Name)
            )
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
    return names


def insert_before_class(source: str, class_name: str, blocks: list[str]) -> str:
    """Insert top-level blocks before a class, each followed by two blank lines."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            lines = source.splitlines()
            first = node.lineno - 1 - len(node.decorator_list)
            inserted = "\n\n\n".join(blocks).splitlines() + ["", ""]
            lines[first:first] = inserted
            return "\n".join(lines) + "\n"
    raise ManagementError(
        f"class {class_name} not found; it may have been renamed or removed by hand"
    )


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
