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
{list_signature}
    return crud.list_rows(db, {model}, query)


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

from models import {imported_models}

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


def test_{singular}_list_sorts_and_pages(client, sample_payload):
    for _ in range(3):
        assert client.post(URL, json=sample_payload({model})).status_code == 201
    response = client.get(URL, params={{"limit": 2, "sort": "-" + KEY[0]}})
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 3
    assert len(page["items"]) == 2
    keys = [item[KEY[0]] for item in page["items"]]
    assert keys == sorted(keys, reverse=True)


def test_{singular}_list_rejects_unknown_sort(client):
    response = client.get(URL, params={{"sort": "no_such_field"}})
    assert response.status_code == 422
    assert "cannot sort by 'no_such_field'" in response.json()["detail"]
'''

MANY_TEST_TEMPLATE = """

def test_{singular}_links_{field}(client, sample_payload, sample_keys):
    targets = sample_keys({target}, 2)
    payload = {{**sample_payload({model}), "{ids}": targets}}
    created = client.post(URL, json=payload)
    assert created.status_code == 201, created.text
    row = created.json()
    assert sorted(row["{ids}"]) == sorted(targets)
    row_url = URL + "/" + "/".join(str(row[key]) for key in KEY)

    updated = client.patch(row_url, json={{"{ids}": targets[:1]}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["{ids}"] == targets[:1]
    assert client.get(row_url).json()["{ids}"] == targets[:1]

    unknown = {{**sample_payload({model}), "{ids}": [targets[0], 999999]}}
    missing = client.post(URL, json=unknown)
    assert missing.status_code == 409
    assert "999999" in missing.json()["detail"]
"""

FILTER_TEST_TEMPLATE = """

def test_{singular}_filter_ignores_case(client, sample_payload):
    first = sample_payload({model})
    assert client.post(URL, json=first).status_code == 201
    assert client.post(URL, json=sample_payload({model})).status_code == 201
    value = first["{field}"]
    response = client.get(URL, params={{"{field}": value.upper()}})
    assert response.status_code == 200
    values = [item["{field}"] for item in response.json()["items"]]
    assert value in values
    assert all(value.lower() in found.lower() for found in values)
"""

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
        [f"{model}Create", f"{model}Query", f"{model}Read", f"{model}Update", "Page"],
        key=str.lower,
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
        list_signature=signature(
            f"list_{plural(singular)}",
            f"query: Annotated[{model}Query, Query()]",
            "db: DbSession",
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
        "imported_models": ", ".join(
            sorted({spec.name, *(f.target for f in spec.fields if f.kind == "many")})
        ),
    }
    source = TEST_TEMPLATE.format(**values)
    if any(field.unique for field in spec.fields):
        source += UNIQUE_TEST_TEMPLATE.format(**values)
    for field in spec.fields:
        if field.kind == "many":
            source += MANY_TEST_TEMPLATE.format(
                **values, field=field.name, target=field.target, ids=field.ids_name
            )
    text_fields = [
        f for f in spec.fields if f.kind in {"string", "text"} and not f.primary
    ]
    if text_fields:
        source += FILTER_TEST_TEMPLATE.format(
            **values, field=text_fields[0].column_name
        )
    return source
