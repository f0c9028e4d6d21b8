"""Write Pydantic schemas (Create, Update, Read) into ``schemas.py``."""

from __future__ import annotations

from decimal import Decimal

from management.codegen.imports import ImportBlock
from management.codegen.source import INDENT, Call, layout, py_string
from management.grammar import DEFAULT_NOW, FieldSpec, ModelSpec, primary_key_columns

# Input type of each grammar type: the same limits as the column.
INPUT_TYPES = {
    "text": "str",
    "integer": "Int32",
    "bigint": "Int64",
    "float": "FiniteFloat",
    "boolean": "bool",
    "date": "datetime.date",
    "datetime": "UTCDatetime",
    "time": "datetime.time",
    "uuid": "uuid.UUID",
    "json": "Any",
    "bytes": "Base64Bytes",
}
OUTPUT_TYPES = {
    **INPUT_TYPES,
    "integer": "int",
    "bigint": "int",
    "float": "float",
    "datetime": "datetime.datetime",
    "string": "str",
    "enum": "str",
    "decimal": "Decimal",
}


def required_imports(specs: list[ModelSpec]) -> ImportBlock:
    block = ImportBlock()
    for spec in specs:
        for field in spec.fields:
            kind = field.kind
            if kind in {"date", "time", "datetime"}:
                block.add_module("datetime")
            if kind == "uuid":
                block.add_module("uuid")
            if kind == "json":
                block.add_name("typing", "Any")
            if kind == "decimal":
                block.add_name("decimal", "Decimal")
            if kind == "enum":
                block.add_name("typing", "Literal")
    return block


def render_schemas(spec: ModelSpec, models: dict[str, ModelSpec]) -> str:
    """Return the enum aliases and the Create, Update and Read schemas of one model."""
    columns = [field for field in spec.fields if field.is_column]
    blocks = []
    for field in columns:
        if field.kind == "enum":
            choices = Call(
                "Literal", tuple(py_string(choice) for choice in field.choices), "[]"
            )
            blocks.append(layout(f"{enum_alias(spec, field)} = ", choices))
    create = [f"class {spec.name}Create(Schema):"]
    for field in columns:
        create.extend(render_input_field(spec, field, models, partial=False))
    update = [f"class {spec.name}Update(Schema):"]
    for field in columns:
        if not field.primary:
            update.extend(render_input_field(spec, field, models, partial=True))
    read = [f"class {spec.name}Read(Schema):"]
    if spec.has_implicit_id:
        read.append(f"{INDENT}id: int")
    for field in columns:
        nullable = not (field.required or field.primary)
        type_name = output_type(field, models) + (" | None" if nullable else "")
        read.append(f"{INDENT}{field.column_name}: {type_name}")
    for body in (create, update, read):
        blocks.append(body if len(body) > 1 else [*body, f"{INDENT}pass"])
    return "\n\n\n".join("\n".join(block) for block in blocks)


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
        return "str"
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
