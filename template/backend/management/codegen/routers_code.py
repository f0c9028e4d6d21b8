"""Write the router and the API test of one model."""

from __future__ import annotations

from management.codegen.imports import from_import
from management.codegen.models_code import python_type_of
from management.codegen.source import INDENT, Call, layout, py_string
from management.grammar import ModelSpec, plural, primary_key_columns

ROUTER_TEMPLATE = '''"""HTTP routes for {model}: list, get, create, update and delete."""

{imports}

router = APIRouter(prefix="{prefix}", tags=["{model}"])


@router.get("", response_model=Page[{model}Read])
def list_{plural_name}(
    db: DbSession,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=crud.MAX_PAGE_SIZE)] = crud.DEFAULT_PAGE_SIZE,
):
{list_call}


@router.get("{key_path}", response_model={model}Read)
{get_signature}
{get_call}
    response.headers["ETag"] = crud.etag(row)
    return row


@router.post("", response_model={model}Read, status_code=status.HTTP_201_CREATED)
{create_signature}
    row = crud.create_row(db, {model}, payload.model_dump(exclude_unset=True))
    response.headers["ETag"] = crud.etag(row)
    return row


@router.patch("{key_path}", response_model={model}Read)
def update_{singular}(
    {key_params_lines}
    payload: {model}Update,
    db: DbSession,
    response: Response,
    if_match: IfMatch = None,
):
    changes = payload.model_dump(exclude_unset=True)
{update_call}
    response.headers["ETag"] = crud.etag(row)
    return row


@router.delete("{key_path}", status_code=status.HTTP_204_NO_CONTENT)
{delete_signature}
{delete_call}
'''

TEST_TEMPLATE = '''"""API round trip for {model}: create, read, update and delete one row."""

from models import {model}

URL = "{prefix}"
KEY = {key_literal}


def test_{singular}_crud_round_trip(client, sample_payload, changed_values):
    payload = sample_payload({model})
    created = client.post(URL, json=payload)
    assert created.status_code == 201, created.text
    row = created.json()
    assert {{key: row[key] for key in payload}} == payload
    row_url = URL + "/" + "/".join(str(row[key]) for key in KEY)

    fetched = client.get(row_url)
    assert fetched.status_code == 200
    assert fetched.json() == row

    listed = client.get(URL, params={{"limit": 1000}})
    assert listed.status_code == 200
    assert row in listed.json()["items"]

    changes = changed_values({model}, payload)
    updated = client.patch(row_url, json=changes)
    assert updated.status_code == 200, updated.text
    assert updated.json() == {{**row, **changes}}

    deleted = client.delete(row_url)
    assert deleted.status_code == 204
    assert client.get(row_url).status_code == 404


def test_{singular}_rejects_unknown_field(client, sample_payload):
    payload = {{**sample_payload({model}), "no_such_field": 1}}
    response = client.post(URL, json=payload)
    assert response.status_code == 422
'''

UNIQUE_TEST_TEMPLATE = """

def test_{singular}_duplicate_is_conflict(client, sample_payload):
    payload = sample_payload({model})
    assert client.post(URL, json=payload).status_code == 201
    duplicate = client.post(URL, json=payload)
    assert duplicate.status_code == 409
    assert "conflict" in duplicate.json()["detail"]
"""


def url_prefix(spec: ModelSpec) -> str:
    return "/" + plural(spec.table_name).replace("_", "-")


def module_name(spec: ModelSpec) -> str:
    """Return the module name of the model's router and the stem of its test file."""
    return spec.table_name


def render_router(spec: ModelSpec, models: dict[str, ModelSpec]) -> str:
    keys = primary_key_columns(spec)
    key_names = [key.column_name for key in keys]
    key_types = [python_type_of(key, models) for key in keys]
    key_params = tuple(
        f"{name}: {key_type}"
        for name, key_type in zip(key_names, key_types, strict=True)
    )
    key_tuple = (
        f"({key_names[0]},)" if len(key_names) == 1 else f"({', '.join(key_names)})"
    )
    model = spec.name
    singular = spec.table_name

    stdlib = [
        f"import {module}"
        for module in ("datetime", "uuid")
        if any(t.startswith(module + ".") for t in key_types)
    ]
    schema_names = sorted(
        [f"{model}Create", f"{model}Read", f"{model}Update", "Page"], key=str.lower
    )
    imports = [
        *stdlib,
        "from typing import Annotated",
        "",
        "from fastapi import APIRouter, Query, Response, status",
        "",
        "import crud",
        "from dependencies import DbSession, IfMatch",
        f"from models import {model}",
        *from_import("schemas", schema_names),
    ]

    def statement(prefix: str, name: str, *args: str) -> str:
        return "\n".join(layout(prefix, Call(name, args), indent=INDENT))

    def signature(name: str, *params: str, returns: str = "") -> str:
        return "\n".join(layout("def ", Call(name, params), f"{returns}:"))

    return ROUTER_TEMPLATE.format(
        model=model,
        imports="\n".join(imports),
        prefix=url_prefix(spec),
        singular=singular,
        plural_name=plural(singular),
        key_path="".join(f"/{{{name}}}" for name in key_names),
        key_params_lines="\n    ".join(f"{param}," for param in key_params),
        list_call=statement(
            "return ", "crud.list_rows", "db", model, "offset=offset", "limit=limit"
        ),
        get_signature=signature(
            f"get_{singular}", *key_params, "db: DbSession", "response: Response"
        ),
        get_call=statement("row = ", "crud.get_row", "db", model, key_tuple),
        create_signature=signature(
            f"create_{singular}",
            f"payload: {model}Create",
            "db: DbSession",
            "response: Response",
        ),
        update_call=statement(
            "row = ",
            "crud.update_row",
            "db",
            model,
            key_tuple,
            "changes",
            "if_match=if_match",
        ),
        delete_signature=signature(
            f"delete_{singular}",
            *key_params,
            "db: DbSession",
            "if_match: IfMatch = None",
            returns=" -> None",
        ),
        delete_call=statement(
            "", "crud.delete_row", "db", model, key_tuple, "if_match=if_match"
        ),
    )


def render_test(spec: ModelSpec) -> str:
    keys = tuple(key.column_name for key in primary_key_columns(spec))
    quoted = [py_string(key) for key in keys]
    key_literal = f"({quoted[0]},)" if len(quoted) == 1 else f"({', '.join(quoted)})"
    values = {
        "model": spec.name,
        "prefix": url_prefix(spec),
        "singular": spec.table_name,
        "key_literal": key_literal,
    }
    source = TEST_TEMPLATE.format(**values)
    if any(field.unique for field in spec.fields):
        source += UNIQUE_TEST_TEMPLATE.format(**values)
    return source
