"""Write Pydantic schemas (Create, Update, Read) into ``schemas.py``."""

from __future__ import annotations

from decimal import Decimal

from management.codegen.classes import Member
from management.codegen.imports import ImportBlock
from management.codegen.source import INDENT, Call, layout, py_string
from management.grammar import DEFAULT_NOW, FieldSpec, ModelSpec, primary_key_columns

# Input type of each grammar type: the same limits as the column.
INPUT_TYPES = {
    "text": "Text",
    "integer": "Int32",
    "bigint": "Int64",
    "float": "FiniteFloat",
    "boolean": "bool",
    "date": "datetime.date",
    "datetime": "UTCDatetime",
    "time": "datetime.time",
    "uuid": "uuid.UUID",
    "json": "JSONValue",
    "bytes": "Base64Bytes",
}
OUTPUT_TYPES = {
    **INPUT_TYPES,
    "integer": "int",
    "bigint": "int",
    "float": "float",
    "text": "str",
    "json": "Any",
    "datetime": "datetime.datetime",
    "string": "str",
    "enum": "str",
    "decimal": "PlainDecimal",
}


def required_imports(
    specs: list[ModelSpec], models: dict[str, ModelSpec]
) -> ImportBlock:
    block = ImportBlock()
    for spec in specs:
        for field in spec.fields:
            kind = field.kind
            if kind in {"date", "time", "datetime"}:
                block.add_module("datetime")
            if kind in {"ref", "many"} and field.target in models:
                key = primary_key_columns(models[field.target])[0]
                if key.kind in {"date", "time", "datetime"}:
                    block.add_module("datetime")
                if key.kind == "uuid":
                    block.add_module("uuid")
            if kind == "uuid":
                block.add_module("uuid")
            if kind == "json":
                block.add_name("typing", "Any")
            if kind == "decimal":
                block.add_name("decimal", "Decimal")
            if kind == "enum":
                block.add_name("typing", "Literal")
    return block


SCHEMA_KINDS = ("Create", "Update", "Read", "Query")
SCHEMA_BASES = {
    "Create": "Schema",
    "Update": "Schema",
    "Read": "Schema",
    "Query": "ListQuery",
}
# Query parameters filter on these types; JSON and bytes columns cannot be filtered.
FILTER_TYPES = {
    **OUTPUT_TYPES,
    "json": None,
    "bytes": None,
    "datetime": "datetime.datetime",
}


def render_schemas(spec: ModelSpec, models: dict[str, ModelSpec]) -> str:
    """Return the enum aliases and the Create, Update, Read and Query schemas of one model."""
    blocks = [alias.lines for alias in enum_aliases(spec)]
    for kind, members in schema_members(spec, models).items():
        body = [line for member in members for line in member.lines]
        blocks.append(
            [
                f"class {spec.name}{kind}({SCHEMA_BASES[kind]}):",
                *(body or [f"{INDENT}pass"]),
            ]
        )
    return "\n\n\n".join("\n".join(block) for block in blocks)


def enum_aliases(spec: ModelSpec) -> list[Member]:
    """Return a ``Literal`` alias for each enum field, such as ``BookStatus``."""
    aliases = []
    for field in spec.fields:
        if field.kind == "enum":
            choices = Call("Literal", tuple(py_string(c) for c in field.choices), "[]")
            name = enum_alias(spec, field)
            aliases.append(Member(name, layout(f"{name} = ", choices)))
    return aliases


def schema_members(
    spec: ModelSpec, models: dict[str, ModelSpec]
) -> dict[str, list[Member]]:
    """Return the fields of each schema class of a model, keyed by Create, Update, Read, Query."""
    members: dict[str, list[Member]] = {kind: [] for kind in SCHEMA_KINDS}
    if spec.has_implicit_id:
        members["Read"].append(Member("id", [f"{INDENT}id: int"]))
        members["Query"].append(Member("id", [f"{INDENT}id: int | None = None"]))
    for field in spec.fields:
        for kind, member in field_schema_members(spec, field, models).items():
            members[kind].append(member)
    return members


def field_schema_members(
    spec: ModelSpec, field: FieldSpec, models: dict[str, ModelSpec]
) -> dict[str, Member]:
    """Return what one field adds to each schema class."""
    if field.kind == "many":
        return many_schema_members(field, models)
    name = field.column_name
    nullable = not (field.required or field.primary)
    members = {
        "Create": Member(name, render_input_field(spec, field, models, partial=False))
    }
    if not field.primary:
        members["Update"] = Member(
            name, render_input_field(spec, field, models, partial=True)
        )
    read_type = output_type(field, models) + (" | None" if nullable else "")
    members["Read"] = Member(name, [f"{INDENT}{name}: {read_type}"])
    filter_type = (
        enum_alias(spec, field)
        if field.kind == "enum"
        else filter_type_of(field, models)
    )
    if filter_type is not None:
        members["Query"] = Member(
            name, [f"{INDENT}{name}: {filter_type} | None = None"]
        )
    return members


def many_schema_members(
    field: FieldSpec, models: dict[str, ModelSpec]
) -> dict[str, Member]:
    """Return the ``tag_ids`` fields of a many-to-many field such as ``tags``."""
    name = field.ids_name
    key_type = input_type(primary_key_columns(models[field.target])[0], models)
    return {
        "Create": Member(
            name,
            layout(
                f"{name}: list[{key_type}] = ",
                Call("Field", ("default_factory=list",)),
                indent=INDENT,
            ),
        ),
        "Update": Member(name, [f"{INDENT}{name}: list[{key_type}] = None"]),
        "Read": Member(
            name,
            layout(
                f"{name}: RelatedKeys = ",
                Call("Field", (f"validation_alias={py_string(field.name)}",)),
                indent=INDENT,
            ),
        ),
    }


def filter_type_of(field: FieldSpec, models: dict[str, ModelSpec]) -> str | None:
    if field.kind == "ref":
        return filter_type_of(primary_key_columns(models[field.target])[0], models)
    return FILTER_TYPES[field.kind]


def enum_alias(spec: ModelSpec, field: FieldSpec) -> str:
    """Return the name of the Literal alias for an enum field, such as BookStatus."""
    return spec.name + "".join(part.capitalize() for part in field.name.split("_"))


def render_input_field(
    spec: ModelSpec, field: FieldSpec, models: dict[str, ModelSpec], *, partial: bool
) -> list[str]:
    nullable = not (field.required or field.primary)
    type_name = (
        enum_alias(spec, field) if field.kind == "enum" else input_type(field, models)
    )
    if nullable:
        type_name += " | None"
    if partial:
        # A required column may be left out of an update but not set to null:
        # Pydantic does not validate the default, but it does validate a null.
        default = "None"
    elif field.default is not None:
        default = default_literal(field.default)
    elif nullable:
        default = "None"
    else:
        default = None
    constraints = field_constraints(field, models)
    prefix = f"{field.column_name}: {type_name}"
    if constraints:
        arguments = (
            (f"default={default}",) if default is not None else ()
        ) + constraints
        return layout(f"{prefix} = ", Call("Field", arguments), indent=INDENT)
    return layout(prefix, f" = {default}" if default is not None else "", indent=INDENT)


def field_constraints(
    field: FieldSpec, models: dict[str, ModelSpec]
) -> tuple[str, ...]:
    if field.kind == "ref":
        return field_constraints(primary_key_columns(models[field.target])[0], models)
    if field.kind == "string":
        return (f"max_length={field.length}",)
    if field.kind == "decimal":
        return (f"max_digits={field.precision}", f"decimal_places={field.scale}")
    return ()


def input_type(field: FieldSpec, models: dict[str, ModelSpec]) -> str:
    kind = field.kind
    if kind == "ref":
        return input_type(primary_key_columns(models[field.target])[0], models)
    if kind == "string":
        return "Text"
    if kind == "decimal":
        return "Decimal"
    return INPUT_TYPES[kind]


def output_type(field: FieldSpec, models: dict[str, ModelSpec]) -> str:
    if field.kind == "ref":
        return output_type(primary_key_columns(models[field.target])[0], models)
    return OUTPUT_TYPES[field.kind]


def default_literal(value: object) -> str:
    if value == DEFAULT_NOW:
        # The database fills the time in; the schema leaves the field out.
        return "None"
    if isinstance(value, Decimal):
        return f"Decimal({py_string(format(value, 'f'))})"
    if isinstance(value, str):
        return py_string(value)
    return repr(value)
