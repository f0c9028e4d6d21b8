"""Load the Chinook sample database into a generated project and read it back over HTTP.

The project's models come from tests/data/chinook_models.yml. The script
tests/data/load_chinook.py inserts every Chinook row through the project's own
SQLAlchemy models. Every row must then come back from the list endpoints
unchanged, apart from the API's documented conversions. Decimals arrive as
strings with their scale, and datetimes as UTC ISO strings ending in "Z".
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml

from scripts.projects import clean_env, run

DATA_DIR = Path(__file__).resolve().parent / "data"
CHINOOK_FILE = DATA_DIR / "chinook.sqlite"
MODELS_FILE = DATA_DIR / "chinook_models.yml"
LOADER_SCRIPT = DATA_DIR / "load_chinook.py"

# The generated list endpoints accept at most limit=1000.
PAGE_SIZE = 1000


@dataclass(frozen=True)
class ChinookTable:
    """Location of a Chinook table in the generated project."""

    model: str
    url: str
    key: tuple[str, ...]
    # Chinook column -> API field, which is also the model's column name.
    columns: dict[str, str]


TABLES = {
    "Album": ChinookTable(
        model="Album",
        url="/albums",
        key=("id",),
        columns={"AlbumId": "id", "Title": "title", "ArtistId": "artist_id"},
    ),
    "Artist": ChinookTable(
        model="Artist",
        url="/artists",
        key=("id",),
        columns={"ArtistId": "id", "Name": "name"},
    ),
    "Customer": ChinookTable(
        model="Customer",
        url="/customers",
        key=("id",),
        columns={
            "CustomerId": "id",
            "FirstName": "first_name",
            "LastName": "last_name",
            "Company": "company",
            "Address": "address",
            "City": "city",
            "State": "state",
            "Country": "country",
            "PostalCode": "postal_code",
            "Phone": "phone",
            "Fax": "fax",
            "Email": "email",
            "SupportRepId": "support_rep_id",
        },
    ),
    "Employee": ChinookTable(
        model="Employee",
        url="/employees",
        key=("id",),
        columns={
            "EmployeeId": "id",
            "LastName": "last_name",
            "FirstName": "first_name",
            "Title": "title",
            "ReportsTo": "reports_to_id",
            "BirthDate": "birth_date",
            "HireDate": "hire_date",
            "Address": "address",
            "City": "city",
            "State": "state",
            "Country": "country",
            "PostalCode": "postal_code",
            "Phone": "phone",
            "Fax": "fax",
            "Email": "email",
        },
    ),
    "Genre": ChinookTable(
        model="Genre",
        url="/genres",
        key=("id",),
        columns={"GenreId": "id", "Name": "name"},
    ),
    "Invoice": ChinookTable(
        model="Invoice",
        url="/invoices",
        key=("id",),
        columns={
            "InvoiceId": "id",
            "CustomerId": "customer_id",
            "InvoiceDate": "invoice_date",
            "BillingAddress": "billing_address",
            "BillingCity": "billing_city",
            "BillingState": "billing_state",
            "BillingCountry": "billing_country",
            "BillingPostalCode": "billing_postal_code",
            "Total": "total",
        },
    ),
    "InvoiceLine": ChinookTable(
        model="InvoiceLine",
        url="/invoice-lines",
        key=("id",),
        columns={
            "InvoiceLineId": "id",
            "InvoiceId": "invoice_id",
            "TrackId": "track_id",
            "UnitPrice": "unit_price",
            "Quantity": "quantity",
        },
    ),
    "MediaType": ChinookTable(
        model="MediaType",
        url="/media-types",
        key=("id",),
        columns={"MediaTypeId": "id", "Name": "name"},
    ),
    "Playlist": ChinookTable(
        model="Playlist",
        url="/playlists",
        key=("id",),
        columns={"PlaylistId": "id", "Name": "name"},
    ),
    "PlaylistTrack": ChinookTable(
        model="PlaylistTrack",
        url="/playlist-tracks",
        key=("playlist_id", "track_id"),
        columns={"PlaylistId": "playlist_id", "TrackId": "track_id"},
    ),
    "Track": ChinookTable(
        model="Track",
        url="/tracks",
        key=("id",),
        columns={
            "TrackId": "id",
            "Name": "name",
            "AlbumId": "album_id",
            "MediaTypeId": "media_type_id",
            "GenreId": "genre_id",
            "Composer": "composer",
            "Milliseconds": "milliseconds",
            "Bytes": "bytes",
            "UnitPrice": "unit_price",
        },
    ),
}

# Rows per table in tests/data/chinook.sqlite.
ROW_COUNTS = {
    "Album": 347,
    "Artist": 275,
    "Customer": 59,
    "Employee": 8,
    "Genre": 25,
    "Invoice": 412,
    "InvoiceLine": 2240,
    "MediaType": 5,
    "Playlist": 18,
    "PlaylistTrack": 8715,
    "Track": 3503,
}


def connect_chinook() -> sqlite3.Connection:
    """Open the Chinook file read-only, so no test can change it."""
    return sqlite3.connect(f"{CHINOOK_FILE.as_uri()}?mode=ro", uri=True)


def declared_types(chinook: sqlite3.Connection, table: str) -> dict[str, str]:
    """Return each column's declared SQL type, such as NVARCHAR(160)."""
    return {
        row[1]: row[2].upper()
        for row in chinook.execute(f'PRAGMA table_info("{table}")')
    }


def expected_value(value: object, declared_type: str) -> object:
    """Convert a Chinook value to the JSON value the API returns for it."""
    if value is None:
        return None
    if declared_type == "DATETIME":
        # Chinook's timestamps have no time zone, so the loader stores them as UTC.
        parsed = datetime.datetime.fromisoformat(str(value))
        return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")
    numeric = re.fullmatch(r"NUMERIC\(\d+,(\d+)\)", declared_type)
    if numeric:
        scale = int(numeric.group(1))
        return str(Decimal(str(value)).quantize(Decimal(1).scaleb(-scale)))
    return value


def expected_rows(table: str) -> dict[tuple, dict[str, object]]:
    """Return the rows the API should serve for a Chinook table, by primary key."""
    spec = TABLES[table]
    with closing(connect_chinook()) as chinook:
        types = declared_types(chinook, table)
        selected = ", ".join(f'"{column}"' for column in spec.columns)
        raw_rows = chinook.execute(f'SELECT {selected} FROM "{table}"').fetchall()
    rows = {}
    for raw_row in raw_rows:
        row = {
            field: expected_value(value, types[column])
            for (column, field), value in zip(
                spec.columns.items(), raw_row, strict=True
            )
        }
        rows[tuple(row[name] for name in spec.key)] = row
    return rows


def read_all_rows(base_url: str, table: str) -> list[dict[str, object]]:
    """Read every row of a table from its list endpoint, one page at a time."""
    url = TABLES[table].url
    count = ROW_COUNTS[table]
    rows: list[dict[str, object]] = []
    # One page more than the rows need, so a last full page is followed by an
    # empty one, and a server that never stops paging cannot loop forever.
    max_pages = count // PAGE_SIZE + 2
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for page_number in range(max_pages):
            offset = page_number * PAGE_SIZE
            response = client.get(url, params={"offset": offset, "limit": PAGE_SIZE})
            assert response.status_code == 200, (
                f"GET {url}?offset={offset}&limit={PAGE_SIZE} returned "
                f"{response.status_code}: {response.text[:1000]}"
            )
            page = response.json()
            assert page["total"] == count, (
                f"{url} reports total={page['total']}, Chinook's {table} has {count} rows"
            )
            assert page["offset"] == offset, (
                f"{url} returned offset={page['offset']} for offset={offset}"
            )
            assert page["limit"] == PAGE_SIZE, (
                f"{url} returned limit={page['limit']} for limit={PAGE_SIZE}"
            )
            rows.extend(page["items"])
            if len(page["items"]) < PAGE_SIZE:
                break
    return rows


@pytest.fixture(scope="module")
def chinook_project(render, project_python) -> Path:
    """Render a project with the Chinook models and load every Chinook row into it."""
    models = yaml.safe_load(MODELS_FILE.read_text(encoding="utf-8"))
    project = render({"models": models}, name="chinook", seed=False)

    backend = project / "backend"
    mapping = {
        table: {"model": spec.model, "columns": spec.columns}
        for table, spec in TABLES.items()
    }
    result = run(
        [
            str(project_python),
            str(LOADER_SCRIPT),
            str(CHINOOK_FILE),
            json.dumps(mapping),
        ],
        cwd=backend,
        env=clean_env(PYTHONPATH=str(backend)),
    )
    assert result.returncode == 0, (
        f"load_chinook.py failed ({result.returncode}):\n{result.stderr[-3000:]}"
    )
    assert json.loads(result.stdout) == ROW_COUNTS, (
        f"load_chinook.py inserted other row counts: {result.stdout}"
    )
    return project


@pytest.mark.parametrize("table", sorted(TABLES))
def test_chinook_mapping_matches_file(table):
    with closing(connect_chinook()) as chinook:
        columns = list(declared_types(chinook, table))
        count = chinook.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    assert list(TABLES[table].columns) == columns, (
        f"TABLES[{table!r}] must map exactly Chinook's columns {columns}"
    )
    assert ROW_COUNTS[table] == count, (
        f"ROW_COUNTS[{table!r}] is {ROW_COUNTS[table]}, the file has {count} rows"
    )


def test_chinook_models_match_mapping():
    models = yaml.safe_load(MODELS_FILE.read_text(encoding="utf-8"))
    assert sorted(model["name"] for model in models) == sorted(
        spec.model for spec in TABLES.values()
    ), "chinook_models.yml must define one model per Chinook table"
    for model in models:
        spec = next(spec for spec in TABLES.values() if spec.model == model["name"])
        columns = [
            f"{name}_id" if definition.startswith("ref(") else name
            for name, definition in model["fields"].items()
        ]
        if spec.key == ("id",):
            columns.insert(0, "id")
        assert columns == list(spec.columns.values()), (
            f"{model['name']} in chinook_models.yml has the columns {columns}, "
            f"TABLES maps Chinook to {list(spec.columns.values())}"
        )


@pytest.mark.parametrize("table", sorted(TABLES))
def test_chinook_table_round_trip(chinook_project, project_python, server, table):
    spec = TABLES[table]
    expected = expected_rows(table)
    with server(project_python, chinook_project / "backend") as base_url:
        rows = read_all_rows(base_url, table)

    assert len(rows) == ROW_COUNTS[table], (
        f"{spec.url} returned {len(rows)} rows, Chinook's {table} has "
        f"{ROW_COUNTS[table]}"
    )
    keys = [tuple(row[name] for name in spec.key) for row in rows]
    assert len(set(keys)) == len(keys), f"{spec.url} returned a primary key twice"
    assert keys == sorted(keys), f"{spec.url} did not list rows in primary key order"
    assert set(keys) == set(expected), (
        f"{spec.url} returned other primary keys than Chinook's {table}"
    )
    fields = set(spec.columns.values())
    for key, row in zip(keys, rows, strict=True):
        assert set(row) == fields, (
            f"{spec.url} row {key} has other fields than {fields}"
        )
        assert row == expected[key], f"{spec.url} row {key} differs from Chinook"


def test_chinook_first_invoice_literal(chinook_project, project_python, server):
    first_invoice = {
        "id": 1,
        "customer_id": 2,
        "invoice_date": "2021-01-01T00:00:00Z",
        "billing_address": "Theodor-Heuss-Straße 34",
        "billing_city": "Stuttgart",
        "billing_state": None,
        "billing_country": "Germany",
        "billing_postal_code": "70174",
        "total": "1.98",
    }
    with server(project_python, chinook_project / "backend") as base_url:
        listed = httpx.get(f"{base_url}/invoices", params={"limit": 1}, timeout=30)
        fetched = httpx.get(f"{base_url}/invoices/1", timeout=30)
        playlist_track = httpx.get(f"{base_url}/playlist-tracks/1/1", timeout=30)

    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == [first_invoice], "first row of /invoices"
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == first_invoice, "GET /invoices/1"
    assert playlist_track.status_code == 200, playlist_track.text
    assert playlist_track.json() == {"playlist_id": 1, "track_id": 1}, (
        "GET /playlist-tracks/1/1 by its composite primary key"
    )
