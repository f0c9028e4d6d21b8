"""Parse and check model specs written in the field grammar.

A model spec is a name plus fields, each field written as
``name: type [modifier ...]``, for example ``title: string(200) required unique``.
The same parser serves the Copier ``models`` answer, the ``create-model``
command and the agent's ``create_database_model`` action. This module uses
only the standard library, so the generation hook can run it before the
project's virtual environment exists.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from management.errors import SpecError

SCALAR_TYPES = (
    "string",
    "text",
    "integer",
    "bigint",
    "float",
    "decimal",
    "boolean",
    "date",
    "datetime",
    "time",
    "uuid",
    "json",
    "bytes",
    "enum",
)
RELATION_TYPES = ("ref", "many")
TYPE_FORMS = (
    "string(n), text, integer, bigint, float, decimal(p,s), boolean, date, "
    "datetime, time, uuid, json, bytes, enum(a,b,...), ref(Model), many(Model)"
)
MODIFIERS = ("required", "unique", "index", "primary", "default=<value>")

# SQLite stores NUMERIC values as 8-byte floats, which keep 15 significant digits.
# A wider decimal would round on tier 1 and not on PostgreSQL.
MAX_DECIMAL_PRECISION = 15
MAX_STRING_LENGTH = 10_485_760  # PostgreSQL's limit for varchar(n)
MAX_NAME_LENGTH = 50  # leaves room under PostgreSQL's 63-byte identifiers

INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)

# PostgreSQL's reserved key words plus the SQLite ones that cannot be used bare
# as column names. Such a name works through SQLAlchemy, which quotes it, but
# breaks every hand-written SQL statement that leaves the quotes out.
SQL_RESERVED_WORDS = frozenset(
    """
    all analyse analyze and any array as asc asymmetric authorization binary both
    case cast check collate collation column concurrently constraint create cross
    current_catalog current_date current_role current_schema current_time
    current_timestamp current_user default deferrable desc distinct do else end
    except false fetch for foreign freeze from full grant group having ilike in
    initially inner intersect into is isnull join lateral leading left like limit
    localtime localtimestamp natural not notnull null offset on only or order outer
    overlaps placing primary references returning right select session_user
    similar some symmetric system_user table tablesample then to trailing true
    union unique user using variadic verbose when where window with
    autoincrement escape exists glob if index regexp transaction
    """.split()
)

# Attribute names that SQLAlchemy's declarative classes or Pydantic models
# already define, and names the generated code uses for itself.
GENERATOR_NAMES = frozenset(
    {"metadata", "registry", "query", "id", "model_config", "model_fields"}
)
RESERVED_MODEL_NAMES = frozenset({"Base", "Page", "Session", "Decimal", "Any"})
RESERVED_MODEL_SUFFIXES = ("Create", "Update", "Read", "Page")

MODEL_NAME_PATTERN = re.compile(r"[A-Z][A-Za-z0-9]*")
FIELD_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
TYPE_PATTERN = re.compile(r"(?P<kind>[a-z]+)\s*(?:\((?P<args>[^()]*)\))?")
DEFAULT_NOW = "now"


@dataclass(frozen=True)
class FieldSpec:
    """One field of a model, parsed from ``name: type [modifier ...]``."""

    name: str
    kind: str
    required: bool = False
    unique: bool = False
    index: bool = False
    primary: bool = False
    default: object = None
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    choices: tuple[str, ...] = ()
    target: str | None = None
    source: str = ""

    @property
    def column_name(self) -> str:
        """Name of the database column: ``<name>_id`` for a ``ref``."""
        return f"{self.name}_id" if self.kind == "ref" else self.name

    @property
    def is_column(self) -> bool:
        return self.kind != "many"

    @property
    def ids_name(self) -> str:
        """Name of the list of keys the API uses for a many(): ``tags`` gives ``tag_ids``."""
        return f"{singular(self.name)}_ids"


@dataclass(frozen=True)
class ModelSpec:
    """A model: its class name and its fields, in the order they were written."""

    name: str
    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)

    @property
    def table_name(self) -> str:
        return snake_case(self.name)

    @property
    def primary_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(spec for spec in self.fields if spec.primary)

    @property
    def has_implicit_id(self) -> bool:
        """Whether the model gets the integer ``id`` primary key."""
        return not self.primary_fields

    def field_named(self, name: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.name == name), None)


def snake_case(name: str) -> str:
    """Turn a PascalCase model name into a snake_case table name."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


# English words whose plural the regular rules get wrong, as table names use them.
IRREGULAR_PLURALS = {
    "analysis": "analyses",
    "child": "children",
    "datum": "data",
    "half": "halves",
    "knife": "knives",
    "leaf": "leaves",
    "life": "lives",
    "man": "men",
    "medium": "media",
    "person": "people",
    "shelf": "shelves",
    "wife": "wives",
    "wolf": "wolves",
    "woman": "women",
}
IRREGULAR_SINGULARS = {
    plural_form: word for word, plural_form in IRREGULAR_PLURALS.items()
}


def singular(word: str) -> str:
    """Return the singular of a lowercase English plural, such as ``box`` for ``boxes``."""
    head, _, last = word.rpartition("_")
    prefix = f"{head}_" if head else ""
    if last in IRREGULAR_SINGULARS:
        return prefix + IRREGULAR_SINGULARS[last]
    if re.search(r"[^aeiou]ies$", last):
        return prefix + last[:-3] + "y"
    if re.search(r"(ss|x|z|ch|sh|us)es$", last):
        return prefix + last[:-2]
    if last.endswith("s") and not last.endswith(("ss", "us", "is")):
        return prefix + last[:-1]
    return word


def plural(word: str) -> str:
    """Return the English plural of a lowercase word, such as ``shelves`` for ``shelf``."""
    head, _, last = word.rpartition("_")
    prefix = f"{head}_" if head else ""
    if last in IRREGULAR_PLURALS:
        return prefix + IRREGULAR_PLURALS[last]
    if re.search(r"[^aeiou]y$", last):
        return prefix + last[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", last):
        return prefix + last + "es"
    return prefix + last + "s"


def parse_models(
    raw_models: object, known_models: dict[str, ModelSpec] | None = None
) -> list[ModelSpec]:
    """Parse a list of raw model specs and check them together.

    ``raw_models`` is what the ``models`` answer holds: a list of mappings with
    ``name`` and ``fields``. ``known_models`` are models that already exist in
    the project; a ``ref`` or ``many`` may point at them.
    """
    if not isinstance(raw_models, list):
        raise SpecError(
            f"models must be a list of model specs, got {type(raw_models).__name__}",
            fix="write models as a YAML list, for example [{name: Book, fields: {title: string(200)}}]",
        )
    models = [parse_model(raw) for raw in raw_models]
    check_models(models, known_models or {})
    return models


def parse_model(raw: object) -> ModelSpec:
    """Parse one raw model spec: a mapping with ``name`` and ``fields``."""
    if not isinstance(raw, dict):
        raise SpecError(
            f"each model spec must be a mapping, got {raw!r}",
            fix="write {name: Book, fields: {title: string(200)}}",
        )
    unknown_keys = sorted(set(raw) - {"name", "fields"})
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(
            f"model spec {raw!r} has no name",
            fix="add name: followed by a PascalCase model name",
        )
    check_model_name(name)
    if unknown_keys:
        raise SpecError(
            f"unknown key(s) {', '.join(unknown_keys)}",
            model=name,
            fix="a model spec has only the keys name and fields",
        )
    raw_fields = raw.get("fields") or {}
    return ModelSpec(name=name, fields=tuple(parse_fields(name, raw_fields)))


def parse_fields(model: str, raw_fields: object) -> list[FieldSpec]:
    """Parse fields given as a mapping, a list of lines or one multi-line text."""
    if isinstance(raw_fields, str):
        raw_fields = [line for line in raw_fields.splitlines() if line.strip()]
    if isinstance(raw_fields, dict):
        pairs = [(str(name), value) for name, value in raw_fields.items()]
    elif isinstance(raw_fields, list):
        pairs = [split_field_line(model, line) for line in raw_fields]
    else:
        raise SpecError(
            f"fields must be a mapping or a list of lines, got {raw_fields!r}",
            model=model,
            fix="write fields as {title: string(200) required}",
        )
    fields: list[FieldSpec] = []
    seen: set[str] = set()
    for name, definition in pairs:
        spec = parse_field(model, name, definition)
        claimed = {spec.name, spec.column_name}
        if spec.kind == "many":
            claimed.add(spec.ids_name)
        for column in claimed:
            if column in seen:
                raise SpecError(
                    f"duplicate field name {column!r}",
                    model=model,
                    field=name,
                    fix="give every field, and every ref's <name>_id column, its own name",
                )
            seen.add(column)
        fields.append(spec)
    check_primary_key(model, fields)
    return fields


def split_field_line(model: str, line: object) -> tuple[str, str]:
    if not isinstance(line, str) or ":" not in line:
        raise SpecError(
            f"field line {line!r} is not of the form 'name: type [modifier ...]'",
            model=model,
            fix="write each field as name: type, for example title: string(200) required",
        )
    name, definition = line.split(":", 1)
    return name.strip(), definition.strip()


def parse_field(model: str, name: str, definition: object) -> FieldSpec:
    """Parse ``type [modifier ...]`` for the field ``name`` of ``model``."""
    check_field_name(model, name)
    if not isinstance(definition, str) or not definition.strip():
        raise SpecError(
            f"field has no type (got {definition!r})",
            model=model,
            field=name,
            fix=f"give it one of the types {TYPE_FORMS}",
        )
    text = definition.strip()
    match = TYPE_PATTERN.match(text)
    if not match or match.group("kind") not in SCALAR_TYPES + RELATION_TYPES:
        bad = text.split()[0]
        raise SpecError(
            f"unknown type {bad!r}",
            model=model,
            field=name,
            fix=f"use one of {TYPE_FORMS}",
        )
    kind = match.group("kind")
    if match.group("args") is None and text[match.end() :].lstrip().startswith("("):
        raise SpecError(
            f"type {text.split()[0]!r} has no closing parenthesis",
            model=model,
            field=name,
            fix=f"write {kind}(...) with both parentheses and no spaces around the commas",
        )
    type_options = parse_type_arguments(model, name, kind, match.group("args"))
    modifiers = parse_modifiers(model, name, text[match.end() :].split())
    spec = FieldSpec(name=name, kind=kind, source=text, **type_options, **modifiers)
    if spec.default is not None:
        spec = FieldSpec(**{**spec.__dict__, "default": parse_default(model, spec)})
    check_field_combination(model, spec)
    return spec


def parse_type_arguments(model: str, name: str, kind: str, args: str | None) -> dict:
    parts = [part.strip() for part in args.split(",")] if args is not None else []
    if kind == "string":
        if (
            len(parts) != 1
            or not parts[0].isdigit()
            or not 1 <= int(parts[0]) <= MAX_STRING_LENGTH
        ):
            raise SpecError(
                f"string needs a maximum length, got string({args or ''})",
                model=model,
                field=name,
                fix=f"write string(n) with n from 1 to {MAX_STRING_LENGTH}, or use text",
            )
        return {"length": int(parts[0])}
    if kind == "decimal":
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise SpecError(
                f"decimal needs a precision and a scale, got decimal({args or ''})",
                model=model,
                field=name,
                fix="write decimal(p,s), for example decimal(10,2)",
            )
        precision, scale = int(parts[0]), int(parts[1])
        if not 1 <= precision <= MAX_DECIMAL_PRECISION or scale > precision:
            raise SpecError(
                f"decimal({precision},{scale}) is out of range",
                model=model,
                field=name,
                fix=(
                    f"use a precision from 1 to {MAX_DECIMAL_PRECISION} (SQLite keeps "
                    "15 significant digits) and a scale no larger than the precision"
                ),
            )
        return {"precision": precision, "scale": scale}
    if kind == "enum":
        choices = tuple(parts)
        if not choices or not all(re.fullmatch(r"[A-Za-z0-9_-]+", c) for c in choices):
            raise SpecError(
                f"enum needs a list of plain values, got enum({args or ''})",
                model=model,
                field=name,
                fix="write enum(a,b,...) with letters, digits, - and _ only",
            )
        if len(set(choices)) != len(choices):
            raise SpecError(
                f"enum({args}) repeats a value",
                model=model,
                field=name,
                fix="list each enum value once",
            )
        return {"choices": choices}
    if kind in RELATION_TYPES:
        if len(parts) != 1 or not MODEL_NAME_PATTERN.fullmatch(parts[0]):
            raise SpecError(
                f"{kind} needs a model name, got {kind}({args or ''})",
                model=model,
                field=name,
                fix=f"write {kind}(Model) with the PascalCase name of another model",
            )
        return {"target": parts[0]}
    if args is not None:
        raise SpecError(
            f"type {kind} takes no arguments, got {kind}({args})",
            model=model,
            field=name,
            fix=f"write {kind} alone",
        )
    return {}


def parse_modifiers(model: str, name: str, words: list[str]) -> dict:
    modifiers: dict[str, object] = {}
    for word in words:
        key, has_value, value = word.partition("=")
        if key == "default" and has_value and value:
            modifiers["default"] = value
        elif key in {"required", "unique", "index", "primary"} and not has_value:
            modifiers[key] = True
        else:
            raise SpecError(
                f"unknown modifier {word!r}",
                model=model,
                field=name,
                fix=f"use the modifiers {', '.join(MODIFIERS)}",
            )
    return modifiers


def parse_default(model: str, spec: FieldSpec) -> object:
    """Convert the text after ``default=`` to a value of the field's type."""
    text = str(spec.default)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]

    def invalid(expected: str) -> SpecError:
        return SpecError(
            f"default {text!r} is not {expected}",
            model=model,
            field=spec.name,
            fix=f"write default=<{expected}> or drop the default",
        )

    kind = spec.kind
    if kind in {"integer", "bigint"}:
        low, high = INT32_RANGE if kind == "integer" else INT64_RANGE
        if not re.fullmatch(r"-?\d+", text) or not low <= int(text) <= high:
            raise invalid(f"an integer from {low} to {high}")
        return int(text)
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise invalid("a number") from None
    if kind == "decimal":
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise invalid("a decimal number") from None
        integer_digits = len(value.quantize(Decimal(1)).as_tuple().digits)
        if not value.is_finite() or integer_digits > spec.precision - spec.scale:
            raise invalid(f"a number that fits decimal({spec.precision},{spec.scale})")
        return value
    if kind == "boolean":
        if text.lower() not in {"true", "false"}:
            raise invalid("true or false")
        return text.lower() == "true"
    if kind in {"string", "text"}:
        if spec.length is not None and len(text) > spec.length:
            raise invalid(f"at most {spec.length} characters")
        return text
    if kind == "enum":
        if text not in spec.choices:
            raise invalid(f"one of {', '.join(spec.choices)}")
        return text
    if kind in {"date", "datetime"}:
        if text != DEFAULT_NOW:
            raise invalid(f"{DEFAULT_NOW} (the time the row is inserted)")
        return DEFAULT_NOW
    raise SpecError(
        f"type {kind} does not take a default",
        model=model,
        field=spec.name,
        fix="drop default= from this field",
    )


def check_model_name(name: str) -> None:
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise SpecError(
            f"model name {name!r} is not PascalCase",
            model=name,
            fix="start with a capital letter and use only letters and digits, for example InvoiceLine",
        )
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError(
            f"model name is {len(name)} characters long",
            model=name,
            fix=f"use at most {MAX_NAME_LENGTH} characters",
        )
    if name in RESERVED_MODEL_NAMES or name.endswith(RESERVED_MODEL_SUFFIXES):
        raise SpecError(
            f"model name {name!r} is used by the generated code",
            model=name,
            fix=f"choose another name; names ending in {', '.join(RESERVED_MODEL_SUFFIXES)} are taken by schemas",
        )


def check_field_name(model: str, name: str) -> None:
    if not FIELD_NAME_PATTERN.fullmatch(name) or name.endswith("_"):
        raise SpecError(
            f"field name {name!r} is not snake_case",
            model=model,
            field=name,
            fix="use lowercase letters, digits and single underscores, starting with a letter",
        )
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError(
            f"field name is {len(name)} characters long",
            model=model,
            field=name,
            fix=f"use at most {MAX_NAME_LENGTH} characters",
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise SpecError(
            f"field name {name!r} is a Python keyword",
            model=model,
            field=name,
            fix=f"rename it, for example {name}_value",
        )
    if name in SQL_RESERVED_WORDS:
        raise SpecError(
            f"field name {name!r} is a reserved SQL word",
            model=model,
            field=name,
            fix=f"rename it, for example {model.lower()}_{name}",
        )
    if name in GENERATOR_NAMES and name != "id":
        raise SpecError(
            f"field name {name!r} is used by SQLAlchemy, Pydantic or the generated code",
            model=model,
            field=name,
            fix=f"rename it, for example {model.lower()}_{name}",
        )
    if name.startswith("model_"):
        raise SpecError(
            f"field name {name!r} starts with model_, which Pydantic reserves",
            model=model,
            field=name,
            fix=f"rename it, for example {name.removeprefix('model_')}",
        )


def check_field_combination(model: str, spec: FieldSpec) -> None:
    if spec.name == "id" and not spec.primary:
        raise SpecError(
            "field name 'id' is the implicit integer primary key",
            model=model,
            field=spec.name,
            fix="drop the field to keep the integer id, or mark it primary to replace it",
        )
    if spec.kind == "many" and (
        spec.required
        or spec.unique
        or spec.primary
        or spec.index
        or spec.default is not None
    ):
        raise SpecError(
            "many(...) takes no modifiers",
            model=model,
            field=spec.name,
            fix="write the field as many(Model) alone",
        )
    if spec.primary and spec.kind in {"float", "json", "bytes", "text", "boolean"}:
        raise SpecError(
            f"type {spec.kind} cannot be part of a primary key",
            model=model,
            field=spec.name,
            fix="mark a string(n), integer, bigint, uuid, date or ref(...) field primary",
        )
    if spec.kind in {"json", "bytes", "text"} and (spec.unique or spec.index):
        raise SpecError(
            f"type {spec.kind} cannot be unique or indexed on every database",
            model=model,
            field=spec.name,
            fix="use string(n) for a unique or indexed text, or drop unique and index",
        )


def check_primary_key(model: str, fields: list[FieldSpec]) -> None:
    primary = [spec for spec in fields if spec.primary]
    nullable = [spec.name for spec in primary if spec.default is not None]
    if nullable:
        raise SpecError(
            "a primary key field cannot have a default",
            model=model,
            field=nullable[0],
            fix="drop default= from the primary key field",
        )


def check_models(models: list[ModelSpec], known_models: dict[str, ModelSpec]) -> None:
    """Check names across models: no duplicates, and every reference resolves."""
    seen: dict[str, str] = {}
    for spec in models:
        for key, kind in ((spec.name, "model name"), (spec.table_name, "table name")):
            if key in seen:
                raise SpecError(
                    f"duplicate {kind} {key!r}",
                    model=spec.name,
                    fix="give every model its own name",
                )
            seen[key] = spec.name
    every_model = {**known_models, **{spec.name: spec for spec in models}}
    tables = {spec.table_name for spec in every_model.values()}
    for spec in models:
        for field_spec in spec.fields:
            if field_spec.target is None:
                continue
            target = every_model.get(field_spec.target)
            if target is None:
                raise SpecError(
                    f"{field_spec.kind}({field_spec.target}) points to a model that does not exist",
                    model=spec.name,
                    field=field_spec.name,
                    fix=f"add a model named {field_spec.target}, or point to one of {', '.join(sorted(every_model)) or 'no models yet'}",
                )
            if len(primary_key_columns(target)) != 1:
                raise SpecError(
                    f"{field_spec.kind}({target.name}) points to a model with a composite primary key",
                    model=spec.name,
                    field=field_spec.name,
                    fix=f"give {target.name} a single primary key, or reference its key fields one by one",
                )
            if field_spec.kind == "many":
                table = association_table_name(spec, field_spec)
                if table in tables:
                    raise SpecError(
                        f"the association table {table!r} has the name of a model's table",
                        model=spec.name,
                        field=field_spec.name,
                        fix="rename the field or the model",
                    )
                if spec.has_implicit_id is False and len(spec.primary_fields) != 1:
                    raise SpecError(
                        "many(...) needs the model to have a single primary key",
                        model=spec.name,
                        field=field_spec.name,
                        fix="drop the composite primary key or the many(...) field",
                    )


def association_table_name(model: ModelSpec, many_field: FieldSpec) -> str:
    return f"{model.table_name}_{many_field.name}"


def primary_key_columns(model: ModelSpec) -> list[FieldSpec]:
    """Return the primary key fields, or a synthetic ``id`` for the implicit key."""
    if model.has_implicit_id:
        return [FieldSpec(name="id", kind="integer", primary=True, required=True)]
    return list(model.primary_fields)
