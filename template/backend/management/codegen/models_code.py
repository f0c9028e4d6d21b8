"""Write SQLAlchemy model classes into ``models.py``."""

from __future__ import annotations

import ast
import re
from decimal import Decimal

from management.codegen.classes import Member
from management.codegen.imports import ImportBlock
from management.codegen.source import INDENT, Call, layout, py_string
from management.grammar import (
    DEFAULT_NOW,
    FieldSpec,
    ModelSpec,
    association_table_name,
    primary_key_columns,
)

# Column type, Python type and the imports each grammar type needs.
COLUMN_TYPES = {
    "text": ("sa.Text()", "str"),
    "integer": ("sa.Integer()", "int"),
    "bigint": ("sa.BigInteger()", "int"),
    "float": ("sa.Double()", "float"),
    "boolean": ("sa.Boolean()", "bool"),
    "date": ("sa.Date()", "datetime.date"),
    "datetime": ("UTCDateTime()", "datetime.datetime"),
    "time": ("sa.Time()", "datetime.time"),
    "uuid": ("sa.Uuid()", "uuid.UUID"),
    "json": ("sa.JSON()", "Any"),
    "bytes": ("sa.LargeBinary()", "bytes"),
}


def required_imports(
    specs: list[ModelSpec], models: dict[str, ModelSpec]
) -> ImportBlock:
    """Return the imports that the classes of ``specs`` need in ``models.py``."""
    block = ImportBlock()
    block.add_module("sqlalchemy", "sa")
    if not specs:
        return block
    block.add_name("sqlalchemy.orm", "Mapped")
    block.add_name("sqlalchemy.orm", "mapped_column")
    for spec in specs:
        for field in spec.fields:
            kind = field.kind
            if kind in {"ref", "many"}:
                block.add_name("sqlalchemy.orm", "relationship")
            if kind == "ref" and field.target in models:
                key = primary_key_columns(models[field.target])[0]
                if key.kind in {"date", "datetime"}:
                    block.add_module("datetime")
                if key.kind == "uuid":
                    block.add_module("uuid")
            if kind in {"date", "time", "datetime"}:
                block.add_module("datetime")
            if kind == "datetime":
                block.add_name("column_types", "UTCDateTime")
            if kind == "datetime" and field.default == DEFAULT_NOW:
                block.add_name("column_types", "utc_now")
            if kind == "date" and field.default == DEFAULT_NOW:
                block.add_name("column_types", "utc_today")
            if kind == "uuid":
                block.add_module("uuid")
            if kind == "json":
                block.add_name("typing", "Any")
            if kind == "decimal":
                block.add_name("column_types", "ExactDecimal")
                block.add_name("decimal", "Decimal")
    return block


def render_model(spec: ModelSpec, models: dict[str, ModelSpec]) -> str:
    """Return the source of the model class, preceded by its association tables."""
    blocks = [
        render_association_table(spec, field, models)
        for field in spec.fields
        if field.kind == "many"
    ]
    lines = [
        f"class {spec.name}(Base):",
        f'{INDENT}__tablename__ = "{spec.table_name}"',
        "",
    ]
    for member in model_members(spec, models):
        lines.extend(member.lines)
    blocks.append("\n".join(lines))
    return "\n\n\n".join(blocks)


def model_members(spec: ModelSpec, models: dict[str, ModelSpec]) -> list[Member]:
    """Return the class attributes of a model, in the order they are written."""
    members = []
    if spec.has_implicit_id:
        id_line = f"{INDENT}id: Mapped[int] = mapped_column(primary_key=True)"
        members.append(Member("id", [id_line]))
    for field in spec.fields:
        members.extend(field_members(spec, field, models))
    return members


def field_members(
    spec: ModelSpec, field: FieldSpec, models: dict[str, ModelSpec]
) -> list[Member]:
    """Return the attributes one field adds: a column, and a relationship for refs."""
    if field.kind == "many":
        return [Member(field.name, render_many(spec, field, models))]
    nullable = not (field.required or field.primary)
    if field.kind == "ref":
        target = models[field.target]
        key = primary_key_columns(target)[0]
        python_type = python_type_of(key, models)
        args: list[str | Call] = [
            f"sa.ForeignKey({py_string(f'{target.table_name}.{key.column_name}')})"
        ]
    else:
        column_type, python_type = column_type_of(field)
        args = [column_type]
    if field.primary:
        args.append("primary_key=True")
    if field.unique:
        args.append("unique=True")
    if field.index or (field.kind == "ref" and not field.primary and not field.unique):
        args.append("index=True")
    args.extend(default_arguments(field))
    annotation = f"Mapped[{python_type}{' | None' if nullable else ''}]"
    lines = layout(
        f"{field.column_name}: {annotation} = ",
        Call("mapped_column", tuple(args)),
        indent=INDENT,
    )
    members = [Member(field.column_name, lines)]
    if field.kind == "ref":
        members.append(Member(field.name, render_ref(spec, field, nullable)))
    return members


def render_ref(spec: ModelSpec, field: FieldSpec, nullable: bool) -> list[str]:
    args: list[str] = [f"foreign_keys=[{field.column_name}]"]
    if field.target == spec.name:
        key = primary_key_columns(spec)[0]
        args.append(f"remote_side=[{key.column_name}]")
    annotation = f"Mapped[{field.target}{' | None' if nullable else ''}]"
    return layout(
        f"{field.name}: {annotation} = ",
        Call("relationship", tuple(args)),
        indent=INDENT,
    )


def render_many(
    spec: ModelSpec, field: FieldSpec, models: dict[str, ModelSpec]
) -> list[str]:
    table = association_table_name(spec, field)
    args: list[str] = [f"secondary={table}"]
    if field.target == spec.name:
        key = primary_key_columns(spec)[0].column_name
        source, target = association_columns(spec, field, models)
        args.append(
            f"primaryjoin={py_string(f'{spec.name}.{key} == {table}.c.{source}')}"
        )
        args.append(
            f"secondaryjoin={py_string(f'{spec.name}.{key} == {table}.c.{target}')}"
        )
    annotation = f"Mapped[list[{field.target}]]"
    return layout(
        f"{field.name}: {annotation} = ",
        Call("relationship", tuple(args)),
        indent=INDENT,
    )


def association_columns(
    spec: ModelSpec, field: FieldSpec, models: dict[str, ModelSpec]
) -> tuple[str, str]:
    """Return the association table's column names for the owner and the target."""
    target = models[field.target]
    source_column = f"{spec.table_name}_id"
    target_column = f"{target.table_name}_id"
    if target_column == source_column:
        target_column = f"{field.name}_id"
    return source_column, target_column


def render_association_table(
    spec: ModelSpec, field: FieldSpec, models: dict[str, ModelSpec]
) -> str:
    table = association_table_name(spec, field)
    target = models[field.target]
    source_column, target_column = association_columns(spec, field, models)
    columns = []
    for column, model in ((source_column, spec), (target_column, target)):
        key = primary_key_columns(model)[0].column_name
        foreign_key = Call(
            "sa.ForeignKey",
            (py_string(f"{model.table_name}.{key}"), 'ondelete="CASCADE"'),
        )
        columns.append(
            Call("sa.Column", (py_string(column), foreign_key, "primary_key=True"))
        )
    call = Call("sa.Table", (py_string(table), "Base.metadata", *columns))
    return "\n".join(layout(f"{table} = ", call))


def column_type_of(field: FieldSpec) -> tuple[str | Call, str]:
    kind = field.kind
    if kind == "string":
        return f"sa.String({field.length})", "str"
    if kind == "decimal":
        return f"ExactDecimal({field.precision}, {field.scale})", "Decimal"
    if kind == "enum":
        choices = tuple(py_string(choice) for choice in field.choices)
        # A VARCHAR on SQLite and PostgreSQL alike, rather than a PostgreSQL enum
        # type that migrations must create and drop. The API schemas check the
        # values; a CHECK constraint is left out because autogenerate cannot see
        # it change when a value is added, and SQLite's batch mode cannot drop
        # the column it guards.
        return Call("sa.Enum", (*choices, "native_enum=False")), "str"
    return COLUMN_TYPES[kind]


def python_type_of(field: FieldSpec, models: dict[str, ModelSpec]) -> str:
    if field.kind == "ref":
        target = models[field.target]
        return python_type_of(primary_key_columns(target)[0], models)
    return column_type_of(field)[1]


def default_arguments(field: FieldSpec) -> list[str]:
    """Return ``default=`` and ``server_default=`` for a field with a default.

    The server default lets a migration add a required column to a table that
    already has rows.
    """
    value = field.default
    if value is None:
        return []
    # Server defaults are SQL that SQLite and PostgreSQL both accept, so a
    # migration renders the same text on every tier. Alembic would put
    # parentheses around the expressions on SQLite only, so they are written here.
    if value == DEFAULT_NOW:
        if field.kind == "date":
            return ["default=utc_today", 'server_default=sa.text("(CURRENT_DATE)")']
        return ["default=utc_now", 'server_default=sa.text("(CURRENT_TIMESTAMP)")']
    if isinstance(value, bool):
        return [f"default={value}", f'server_default="{int(value)}"']
    if isinstance(value, Decimal):
        text = format(value, "f")
        return [
            f"default=Decimal({py_string(text)})",
            f"server_default={py_string(text)}",
        ]
    if isinstance(value, (int, float)):
        return [f"default={value!r}", f"server_default={py_string(repr(value))}"]
    return [f"default={py_string(value)}", f"server_default={py_string(value)}"]


def defined_models(source: str) -> dict[str, ModelSpec]:
    """Return the models defined in ``models.py``, read from its syntax tree.

    Each ModelSpec lists the model's columns with their key, unique and type
    information, which is what a router, its tests and a new ``ref`` need.
    Relationships are left out.
    """
    tree = ast.parse(source)
    models = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        if not any(isinstance(b, ast.Name) and b.id == "Base" for b in node.bases):
            continue
        fields = [spec for spec in map(column_field, node.body) if spec is not None]
        models[node.name] = ModelSpec(name=node.name, fields=tuple(fields))
    return models


# Grammar types by the column type a generated model writes, and by the Python
# type of a foreign key column.
COLUMN_KINDS = {
    "String": "string",
    "Text": "text",
    "Integer": "integer",
    "BigInteger": "bigint",
    "Double": "float",
    "ExactDecimal": "decimal",
    "Boolean": "boolean",
    "Date": "date",
    "UTCDateTime": "datetime",
    "Time": "time",
    "Uuid": "uuid",
    "JSON": "json",
    "LargeBinary": "bytes",
    "Enum": "enum",
}
PYTHON_KINDS = {
    "int": "integer",
    "str": "text",
    "uuid.UUID": "uuid",
    "datetime.date": "date",
    "datetime.datetime": "datetime",
}


def column_field(node: ast.stmt) -> FieldSpec | None:
    """Return a FieldSpec for an ``x: Mapped[...] = mapped_column(...)`` attribute."""
    if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
        return None
    call = node.value
    if isinstance(call, ast.Call) and call_name(call) == "relationship":
        return many_field(node, call)
    if not (isinstance(call, ast.Call) and call_name(call) == "mapped_column"):
        return None
    flags = {
        keyword.arg: getattr(keyword.value, "value", None) is True
        for keyword in call.keywords
    }
    python_type = "int"
    if isinstance(node.annotation, ast.Subscript):
        python_type = ast.unparse(node.annotation.slice).removesuffix(" | None")
    kind = PYTHON_KINDS.get(python_type, "text")
    length = None
    if call.args and isinstance(call.args[0], ast.Call):
        type_name = call_name(call.args[0])
        kind = COLUMN_KINDS.get(type_name, kind)
        arguments = call.args[0].args
        if kind == "string" and arguments and isinstance(arguments[0], ast.Constant):
            length = arguments[0].value
        if kind == "string" and length is None:
            kind = "text"
    return FieldSpec(
        name=node.target.id,
        kind=kind,
        length=length,
        primary=flags.get("primary_key", False),
        unique=flags.get("unique", False),
        required=" | None" not in ast.unparse(node.annotation),
    )


def many_field(node: ast.AnnAssign, call: ast.Call) -> FieldSpec | None:
    """Return a ``many`` FieldSpec for ``x: Mapped[list[Target]] = relationship(secondary=...)``."""
    if not any(keyword.arg == "secondary" for keyword in call.keywords):
        return None
    target = ast.unparse(node.annotation)
    match = re.fullmatch(r"Mapped\[list\[['\"]?(\w+)['\"]?\]\]", target)
    if match is None:
        return None
    return FieldSpec(name=node.target.id, kind="many", target=match.group(1))


def call_name(call: ast.Call) -> str | None:
    """Return ``String`` for ``sa.String(...)`` and ``mapped_column`` for ``mapped_column(...)``."""
    function = call.func
    if isinstance(function, ast.Attribute):
        return function.attr
    if isinstance(function, ast.Name):
        return function.id
    return None
