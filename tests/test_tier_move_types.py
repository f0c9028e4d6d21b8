"""Values of every field type survive a tier move unchanged, read through the API.

The rows hold the edge cases of each type: range ends, full decimal precision,
time zones, nested and Unicode JSON, every byte value, every enum value,
strings at their limit in characters, empty strings and NULLs. Values that a
SQLite file can contain but PostgreSQL rejects must stop the move before
anything is created.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import link_venv
from tests.test_tier_move import manage

pytestmark = pytest.mark.postgres

# Every type of the field grammar, each optional unless marked required.
TYPE_MODELS = [
    {"name": "Tag", "fields": {"label": "string(20) required unique"}},
    {
        "name": "Specimen",
        "fields": {
            "title": "string(8) required",
            "nickname": "string(8)",
            "notes": "text",
            "quantity": "integer",
            "big_number": "bigint",
            "ratio": "float",
            "price": "decimal(15,4)",
            "fraction": "decimal(15,15)",
            "whole": "decimal(15,0)",
            "enabled": "boolean required",
            "checked": "boolean",
            "born_on": "date",
            "seen_at": "datetime",
            "created_at": "datetime default=now",
            "opens_at": "time",
            "code": "uuid",
            "payload": "json",
            "blob": "bytes",
            "status": "enum(draft,published,archived)",
            "main_tag": "ref(Tag)",
            "tags": "many(Tag)",
        },
    },
]
OPTIONAL_FIELDS = [
    "nickname",
    "notes",
    "quantity",
    "big_number",
    "ratio",
    "price",
    "fraction",
    "whole",
    "checked",
    "born_on",
    "seen_at",
    "opens_at",
    "code",
    "payload",
    "blob",
    "status",
    "main_tag_id",
]
# The tiers the project moves through, in order. Each hop is checked on its own.
TIER_PATH = ["postgres_schema", "postgres_database"]

TAG_LABELS = ["", "标签", "עברית", "🏷️ label", "e\u0301\u0302\u0303"]


def base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Sent as the API returns them, so that each response must equal its request.
SPECIMENS = [
    {"title": "nulls", "enabled": False},
    {
        "title": "😀" * 8,
        "nickname": "漢字かなカナ한글",
        "notes": '👩‍👩‍👧 e\u0301 עברית العربية 漢字\ttab\nnewline \\ "quoted"',
        "quantity": 2**31 - 1,
        "big_number": 2**63 - 1,
        "ratio": 1.7976931348623157e308,
        "price": "99999999999.9999",
        "fraction": "0.999999999999999",
        "whole": "999999999999999",
        "enabled": True,
        "checked": True,
        "born_on": "9999-12-31",
        "seen_at": "9999-12-31T23:59:59.999999Z",
        "opens_at": "23:59:59.999999",
        "code": "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "payload": {
            "nested": {"deeper": {"deepest": [1, [2, [3, []]], {}]}},
            "list": [None, True, False, 0, -1, 1.5, "text", {"key": None}],
            "ключ": "значение",
            "emoji 😀": "🎉",
            "": "empty key",
            "big": 2**70,
            "tiny": 5e-324,
            "escaped": '\u0000 \u001f \u2028 \\ "',
        },
        "blob": base64_text(bytes(range(256))),
        "status": "archived",
        "main_tag_id": 5,
        "tag_ids": [1, 2, 3, 4, 5],
    },
    {
        "title": "",
        "nickname": "",
        "notes": "",
        "quantity": -(2**31),
        "big_number": -(2**63),
        "ratio": -1.7976931348623157e308,
        "price": "-99999999999.9999",
        "fraction": "-0.999999999999999",
        "whole": "-999999999999999",
        "enabled": False,
        "checked": False,
        "born_on": "0001-01-01",
        "seen_at": "0001-01-01T00:00:00Z",
        "opens_at": "00:00:00",
        "code": "00000000-0000-0000-0000-000000000000",
        "payload": {},
        "blob": "",
        "status": "draft",
        "main_tag_id": 1,
        "tag_ids": [],
    },
    {
        "title": "zeros",
        "quantity": 0,
        "big_number": 0,
        "ratio": 0.0,
        "price": "0.0000",
        "whole": "0",
        "enabled": True,
        "payload": [],
        "blob": base64_text(b"\x00"),
        "status": "published",
        "tag_ids": [3],
    },
    {
        "title": "tiny",
        "ratio": 5e-324,
        "price": "0.0001",
        "enabled": True,
        "seen_at": "2024-02-29T23:59:59.000001Z",
        "opens_at": "12:30:00.000001",
        "payload": [None],
        "blob": base64_text(b"\x00\xff\x00"),
    },
    {
        "title": "negative",
        "quantity": -1,
        "big_number": -1,
        "ratio": -2.2250738585072014e-308,
        "price": "-0.0001",
        "whole": "-1",
        "enabled": False,
        "payload": [None, None, [None, {}]],
    },
    {
        "title": "שלום",
        "nickname": "مرحبا",
        "notes": "\u202bright to left\u202c and e\u0301\u0327",
        "ratio": 0.1,
        "enabled": True,
        "payload": "a JSON string",
        "code": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    },
    {
        "title": "scalars",
        "enabled": True,
        "payload": 0,
        "checked": False,
    },
    {
        "title": "false",
        "enabled": False,
        "payload": False,
    },
]
# Sent in another form than the API returns; each with the value it must return.
CONVERTED_SPECIMENS = [
    (
        {
            "title": "+05:30",
            "enabled": True,
            "seen_at": "2024-05-31T12:00:00.123456+05:30",
        },
        {"seen_at": "2024-05-31T06:30:00.123456Z"},
    ),
    (
        {"title": "no zone", "enabled": True, "seen_at": "2024-05-31T12:00:00.5"},
        {"seen_at": "2024-05-31T12:00:00.500000Z"},
    ),
    (
        {"title": "-09:30", "enabled": True, "seen_at": "2023-12-31T20:00:00-09:30"},
        {"seen_at": "2024-01-01T05:30:00Z"},
    ),
    # Decimals come back in plain notation, never as "0E-15".
    (
        {"title": "0 scale", "enabled": True, "fraction": "0.000000000000000"},
        {"fraction": "0.000000000000000"},
    ),
    (
        {"title": "1e-15", "enabled": True, "fraction": "0.000000000000001"},
        {"fraction": "0.000000000000001"},
    ),
]
# Deleted before the move, so that the largest id is larger than the row count.
DELETED_SPECIMEN = "negative"


def read_all(client: httpx.Client) -> dict[str, object]:
    """Return each list response and each row's status, ETag and body, by path."""
    responses: dict[str, object] = {}
    for plural in ("tags", "specimens"):
        listed = client.get(f"/{plural}", params={"limit": 1000, "sort": "id"})
        assert listed.status_code == 200, listed.text
        responses[f"/{plural}"] = listed.json()
        for item in listed.json()["items"]:
            path = f"/{plural}/{item['id']}"
            row = client.get(path)
            responses[path] = (row.status_code, row.headers.get("etag"), row.json())
    return responses


def create(client: httpx.Client, path: str, payload: dict) -> dict:
    created = client.post(path, json=payload)
    assert created.status_code == 201, created.text
    return created.json()


def without_generated(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in {"id", "created_at"}}


def test_every_type_survives_the_move(render, project_python, server, postgres_server):
    project = render(
        {"models": TYPE_MODELS, "project_slug": "every-type-move"},
        name="every-type-move",
        seed=False,
    )
    link_venv(project, project_python)
    backend = project / "backend"

    with (
        server(project_python, backend) as base_url,
        httpx.Client(base_url=base_url, timeout=60) as client,
    ):
        tag_ids = [
            create(client, "/tags", {"label": label})["id"] for label in TAG_LABELS
        ]
        assert tag_ids == [1, 2, 3, 4, 5]
        ids = {}
        for payload in SPECIMENS:
            created = create(client, "/specimens", payload)
            ids[payload["title"]] = created["id"]
            read = client.get(f"/specimens/{created['id']}").json()
            expected = {"tag_ids": [], **dict.fromkeys(OPTIONAL_FIELDS), **payload}
            assert without_generated(read) == expected, payload["title"]
        for payload, converted in CONVERTED_SPECIMENS:
            created = create(client, "/specimens", payload)
            ids[payload["title"]] = created["id"]
            read = client.get(f"/specimens/{created['id']}").json()
            expected = {
                "tag_ids": [],
                **dict.fromkeys(OPTIONAL_FIELDS),
                **payload,
                **converted,
            }
            assert without_generated(read) == expected, payload["title"]
        deleted = client.delete(f"/specimens/{ids.pop(DELETED_SPECIMEN)}")
        assert deleted.status_code == 204, deleted.text
        nulls = client.get(f"/specimens/{ids['nulls']}").json()
        assert [field for field in OPTIONAL_FIELDS if nulls[field] is not None] == []
        # string(8) counts characters: 8 emoji (32 UTF-8 bytes) fit, 9 do not.
        too_long = client.post("/specimens", json={"title": "😀" * 9, "enabled": True})
        assert too_long.status_code == 422, too_long.text

    # Expected row counts per table, kept up to date as each hop adds rows.
    rows = {
        "tag": len(TAG_LABELS),
        "specimen": len(ids),
        "specimen_tags": sum(len(p.get("tag_ids", [])) for p in SPECIMENS),
    }
    try:
        for tier in TIER_PATH:
            with (
                server(project_python, backend) as base_url,
                httpx.Client(base_url=base_url, timeout=60) as client,
            ):
                before = read_all(client)

            moved = manage(
                backend,
                "--json",
                "upgrade",
                "--to",
                tier,
                admin_url=postgres_server.admin_url,
            )
            assert moved.returncode == 0, moved.stdout + moved.stderr
            assert json.loads(moved.stdout)["rows"] == rows
            config = json.loads((project / "db_config.json").read_text())
            assert config["tier"] == tier

            with (
                server(project_python, backend) as base_url,
                httpx.Client(base_url=base_url, timeout=60) as client,
            ):
                after = read_all(client)
                assert sorted(after) == sorted(before)
                for path in before:
                    assert after[path] == before[path], path

                # The new tier's sequences continue after the largest copied key.
                largest_specimen = max(
                    item["id"] for item in before["/specimens"]["items"]
                )
                assert largest_specimen > before["/specimens"]["total"]
                largest_tag = max(item["id"] for item in before["/tags"]["items"])
                tag = create(client, "/tags", {"label": tier})
                assert tag["id"] == largest_tag + 1
                # The row with every field at its maximum, written again on the new tier.
                payload = {**SPECIMENS[1], "title": tier[:8]}
                specimen = create(client, "/specimens", payload)
                assert specimen["id"] == largest_specimen + 1
                read = client.get(f"/specimens/{specimen['id']}").json()
                original = before[f"/specimens/{ids[SPECIMENS[1]['title']]}"][2]
                assert without_generated(read) == {
                    **without_generated(original),
                    "title": tier[:8],
                }
            rows = {
                **rows,
                "tag": rows["tag"] + 1,
                "specimen": rows["specimen"] + 1,
                "specimen_tags": rows["specimen_tags"] + len(payload["tag_ids"]),
            }
    finally:
        manage(backend, "deprovision", "--yes", admin_url=postgres_server.admin_url)


# Values that PostgreSQL or the copy would reject, each with the problem the
# preflight must report. They go straight into the SQLite file, because the API
# rejects most of them. test_preflight_rejects_values_from_api covers those it accepts.
PREFLIGHT_CASES = [
    (
        "notes",
        "before\x00after",
        "contains the NUL character U+0000, which PostgreSQL text cannot store",
    ),
    (
        "nickname",
        "\x00",
        "contains the NUL character U+0000, which PostgreSQL text cannot store",
    ),
    ("quantity", "12 apples", "not an integer"),
    ("quantity", 2**31, "outside the integer range -2147483648 to 2147483647"),
    ("quantity", -(2**31) - 1, "outside the integer range -2147483648 to 2147483647"),
    ("big_number", 1.5, "not an integer"),
    ("ratio", "fast", "not a number"),
    ("price", "cheap", "not a number"),
    ("price", 1e11, "too large for decimal(15,4)"),
    ("fraction", -1.0, "too large for decimal(15,15)"),
    ("status", "deleted", "not one of draft, published, archived"),
    (
        "payload",
        "{broken",
        "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ),
    ("payload", "[Infinity]", "not valid JSON: Infinity is not a JSON number"),
    ("payload", '{"a": NaN}', "not valid JSON: NaN is not a JSON number"),
]


PREFLIGHT_ROLE = "every_type_preflight"


@pytest.fixture(scope="module")
def preflight_project(render, project_python):
    """A SQLite project with two specimens, ids 3 and 7, written with sqlite3."""
    project = render(
        {"models": TYPE_MODELS, "project_slug": PREFLIGHT_ROLE.replace("_", "-")},
        name="every-type-preflight",
        seed=False,
    )
    link_venv(project, project_python)
    database = project / "backend" / "database.sqlite"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.executemany(
            "INSERT INTO specimen (id, title, enabled, created_at) VALUES (?, ?, ?, ?)",
            [
                (3, "three", 1, "2024-05-31 12:00:00.000000"),
                (7, "seven", 0, "2024-05-31 12:00:00.000000"),
            ],
        )
        connection.commit()
    return project


@contextlib.contextmanager
def restored_afterwards(database: Path) -> Iterator[None]:
    """Put the SQLite file back as it was, so that each case starts from the same rows."""
    original = database.read_bytes()
    try:
        yield
    finally:
        for suffix in ("-wal", "-shm"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        database.write_bytes(original)


def checkpoint(database: Path) -> None:
    """Write SQLite's WAL into the database file, so that only a change alters its bytes."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def assert_preflight_stops(backend: Path, admin_url: str, problems: list[str]) -> None:
    """Run the upgrade and check that it fails with ``problems`` and changes nothing."""
    database = backend / "database.sqlite"
    checkpoint(database)
    env_before = (backend / ".env").read_bytes()
    database_before = database.read_bytes()

    moved = manage(backend, "upgrade", "--to", "postgres_schema", admin_url=admin_url)

    assert moved.returncode == 1, moved.stdout + moved.stderr
    assert moved.stderr.strip() == (
        "error: the data cannot move to PostgreSQL: "
        + "; ".join(problems)
        + "; fix these rows and run the upgrade again (nothing was created or changed)"
    )
    assert (backend / ".env").read_bytes() == env_before
    assert database.read_bytes() == database_before
    with psycopg.connect(
        admin_url.replace("postgresql+psycopg://", "postgresql://")
    ) as admin:
        role = admin.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (PREFLIGHT_ROLE,)
        ).fetchone()
    assert role is None


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    PREFLIGHT_CASES,
    ids=[f"{column}-{index}" for index, (column, _, _) in enumerate(PREFLIGHT_CASES)],
)
def test_preflight_rejects_value(
    preflight_project, postgres_server, column, value, problem
):
    backend = preflight_project / "backend"
    database = backend / "database.sqlite"
    with restored_afterwards(database):
        with contextlib.closing(sqlite3.connect(database)) as connection:
            connection.execute(
                f"UPDATE specimen SET {column} = ? WHERE id = 7", (value,)
            )
            connection.commit()

        assert_preflight_stops(
            backend,
            postgres_server.admin_url,
            [f"table specimen, id=7, column {column}: {problem}"],
        )


def test_api_refuses_values_postgres_cannot_store(
    preflight_project, project_python, server
):
    backend = preflight_project / "backend"
    text_error = (
        "Value error, must not contain the NUL character (U+0000), which "
        "PostgreSQL cannot store"
    )
    json_error = (
        "Value error, must be finite JSON numbers and valid Unicode text: no NaN, "
        "Infinity or lone surrogate escapes"
    )
    # Python's json module reads 1e400 as infinity and NaN as NaN, and keeps
    # a lone surrogate escape as it is; none of them fit PostgreSQL.
    bodies = [
        ('{"title": "a\\u0000b", "enabled": true}', "title", text_error),
        (
            '{"title": "huge", "enabled": true, "payload": [1e400]}',
            "payload",
            json_error,
        ),
        (
            '{"title": "nan", "enabled": true, "payload": {"r": NaN}}',
            "payload",
            json_error,
        ),
        (
            '{"title": "lone", "enabled": true, "payload": "\\ud800"}',
            "payload",
            json_error,
        ),
        (
            '{"title": "\\udc00", "enabled": true}',
            "title",
            "Input should be a valid string, unable to parse raw data as a unicode "
            "string",
        ),
    ]
    with restored_afterwards(backend / "database.sqlite"):
        with (
            server(project_python, backend) as base_url,
            httpx.Client(base_url=base_url, timeout=60) as client,
        ):
            total_before = client.get("/specimens").json()["total"]
            for body, field, message in bodies:
                refused = client.post(
                    "/specimens",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                assert refused.status_code == 422, refused.text
                (error,) = refused.json()["detail"]
                assert error["loc"] == ["body", field]
                assert error["msg"] == message
            assert client.get("/specimens").json()["total"] == total_before
