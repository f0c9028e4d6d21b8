"""Parse action tags the way a coding model writes them, and reject malformed ones.

The malformed cases live in tests/data/bad_actions.yml, which the end-to-end
test of ``manage.py apply`` reads too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

BACKEND_DIR = Path(__file__).resolve().parent.parent / "template" / "backend"
sys.path.append(str(BACKEND_DIR))

from management.errors import ManagementError  # noqa: E402
from management.tags import ACTION_TYPES, ActionTag, TagError, parse_actions  # noqa: E402

BAD_ACTIONS_FILE = Path(__file__).resolve().parent / "data" / "bad_actions.yml"
BAD_ACTIONS = yaml.safe_load(BAD_ACTIONS_FILE.read_text(encoding="utf-8"))

FENCE = "```"

REPLY_WITH_FENCE = f"""\
I'll add a `Book` model, give it routes and migrate the database.

{FENCE}xml
<action type="create_database_model" name="Book">
  title: string(200) required unique
  published_on: date
  author: ref(Author) required
</action>
<action type="create_crud_operations" model="Book" />
<action type="migrate_database" message="add book" />
{FENCE}

After this, `GET /books` lists the books."""

REPLY_WITH_MIXED_QUOTES = """\
Sure. Two steps:

1. <action type='create_crud_operations' model="Author"/>
2. <action type="seed_database" model='Author' count='3'/>

Done."""

MULTI_LINE_TAG = """\
<action
    TYPE = "migrate_database"
    Message="add author"
    allow_destructive = 'TRUE'
/>"""

ENTITIES = """\
<action type="migrate_database" message="rename &quot;title&quot; &amp; add &lt;isbn&gt;" />
<action type="seed_database" model="Book">
[{"title": "Tom &amp; Jerry", "note": "a &lt; b, it&apos;s &gt; c"}]
</action>"""

FENCED_JSON_BODY = f"""\
<action type="seed_database" model="Book">
{FENCE}json
[
  {{"title": "Dune", "year": 1965}},
  {{"title": "Emma", "year": 1815}}
]
{FENCE}
</action>"""

YAML_BODY = """\
    <action type="seed_database" model="Book">
      - title: Dune
        tags:
          - sf
      - title: Emma
    </action>"""

CSV_BODY_ON_TAG_LINE = """\
<action type="seed_database" model="Book">title,year
    Dune,1965
    Emma,1815
    </action>"""

FIELDS_ATTRIBUTE = """\
<action type="create_database_model" name="Author" fields="name: string(100) required; born: date" replace="False" />"""

ACCEPTED = [
    pytest.param(
        REPLY_WITH_FENCE,
        [
            ActionTag(
                type="create_database_model",
                attributes={"name": "Book"},
                body=(
                    "title: string(200) required unique\n"
                    "published_on: date\n"
                    "author: ref(Author) required"
                ),
                line=4,
            ),
            ActionTag(
                type="create_crud_operations",
                attributes={"model": "Book"},
                body="",
                line=9,
            ),
            ActionTag(
                type="migrate_database",
                attributes={"message": "add book"},
                body="",
                line=10,
            ),
        ],
        id="reply_with_code_fence",
    ),
    pytest.param(
        REPLY_WITH_MIXED_QUOTES,
        [
            ActionTag(
                type="create_crud_operations",
                attributes={"model": "Author"},
                body="",
                line=3,
            ),
            ActionTag(
                type="seed_database",
                attributes={"model": "Author", "count": "3"},
                body="",
                line=4,
            ),
        ],
        id="mixed_quotes_self_closing",
    ),
    pytest.param(
        MULTI_LINE_TAG,
        [
            ActionTag(
                type="migrate_database",
                attributes={"message": "add author", "allow_destructive": "true"},
                body="",
                line=1,
            )
        ],
        id="multi_line_tag_any_case",
    ),
    pytest.param(
        ENTITIES,
        [
            ActionTag(
                type="migrate_database",
                attributes={"message": 'rename "title" & add <isbn>'},
                body="",
                line=1,
            ),
            ActionTag(
                type="seed_database",
                attributes={"model": "Book"},
                body='[{"title": "Tom & Jerry", "note": "a < b, it\'s > c"}]',
                line=2,
            ),
        ],
        id="entities_in_value_and_body",
    ),
    pytest.param(
        '<action type="migrate_database" message="a &amp;lt; b, R&D &nbsp;" />',
        [
            ActionTag(
                type="migrate_database",
                attributes={"message": "a &lt; b, R&D &nbsp;"},
                body="",
                line=1,
            )
        ],
        id="entities_decoded_once",
    ),
    pytest.param(
        FENCED_JSON_BODY,
        [
            ActionTag(
                type="seed_database",
                attributes={"model": "Book"},
                body=(
                    "[\n"
                    '  {"title": "Dune", "year": 1965},\n'
                    '  {"title": "Emma", "year": 1815}\n'
                    "]"
                ),
                line=1,
            )
        ],
        id="fenced_json_body",
    ),
    pytest.param(
        YAML_BODY,
        [
            ActionTag(
                type="seed_database",
                attributes={"model": "Book"},
                body="- title: Dune\n  tags:\n    - sf\n- title: Emma",
                line=1,
            )
        ],
        id="yaml_body_dedented",
    ),
    pytest.param(
        CSV_BODY_ON_TAG_LINE,
        [
            ActionTag(
                type="seed_database",
                attributes={"model": "Book"},
                body="title,year\nDune,1965\nEmma,1815",
                line=1,
            )
        ],
        id="body_starts_on_tag_line",
    ),
    pytest.param(
        FIELDS_ATTRIBUTE,
        [
            ActionTag(
                type="create_database_model",
                attributes={
                    "name": "Author",
                    "fields": "name: string(100) required; born: date",
                    "replace": "false",
                },
                body="",
                line=1,
            )
        ],
        id="fields_attribute",
    ),
    pytest.param(
        '<action type="migrate_database"></action>',
        [ActionTag(type="migrate_database", attributes={}, body="", line=1)],
        id="empty_body",
    ),
    pytest.param(
        '<ACTION Type="Upgrade_Database" TIER="postgres_database">\n</Action >',
        [
            ActionTag(
                type="upgrade_database",
                attributes={"tier": "postgres_database"},
                body="",
                line=1,
            )
        ],
        id="tag_and_type_in_any_case",
    ),
    pytest.param(
        '<action type="migrate_database" message=\'rename "title"; price > 0\' />',
        [
            ActionTag(
                type="migrate_database",
                attributes={"message": 'rename "title"; price > 0'},
                body="",
                line=1,
            )
        ],
        id="other_quote_and_gt_in_value",
    ),
    pytest.param(
        '<action type="seed_database"/>\r\n<action type="seed_database" model=" Book " file="books.csv"/>\r\n',
        [
            ActionTag(type="seed_database", attributes={}, body="", line=1),
            ActionTag(
                type="seed_database",
                attributes={"model": "Book", "file": "books.csv"},
                body="",
                line=2,
            ),
        ],
        id="crlf_and_spaces_in_value",
    ),
    pytest.param(
        "Use the <actions> list; an <action-plan> is not a tag.\n"
        '<action type="create_crud_operations" model="Book" />',
        [
            ActionTag(
                type="create_crud_operations",
                attributes={"model": "Book"},
                body="",
                line=2,
            )
        ],
        id="similar_words_in_prose",
    ),
    pytest.param(
        '<action type="create_database_model" name="Tag" replace="true">\n'
        "~~~\n"
        "label: string(50) required unique\n"
        "~~~\n"
        "</action>",
        [
            ActionTag(
                type="create_database_model",
                attributes={"name": "Tag", "replace": "true"},
                body="label: string(50) required unique",
                line=1,
            )
        ],
        id="tilde_fenced_body",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_parse_accepted_text(text, expected):
    assert parse_actions(text) == expected


@pytest.mark.parametrize("case", BAD_ACTIONS, ids=[case["id"] for case in BAD_ACTIONS])
def test_parse_malformed_text(case):
    with pytest.raises(TagError) as raised:
        parse_actions(case["text"])

    assert str(raised.value) == case["error"]


@pytest.mark.parametrize("case", BAD_ACTIONS, ids=[case["id"] for case in BAD_ACTIONS])
def test_error_message_is_one_line(case):
    with pytest.raises(TagError) as raised:
        parse_actions(case["text"])

    assert "\n" not in str(raised.value)


def test_bad_actions_file_shape():
    ids = [case["id"] for case in BAD_ACTIONS]

    assert len(BAD_ACTIONS) >= 30
    assert len(set(ids)) == len(ids)
    for case in BAD_ACTIONS:
        assert set(case) == {"id", "text", "error"}, case.get("id")


@pytest.mark.parametrize("action", ACTION_TYPES.values(), ids=list(ACTION_TYPES))
def test_action_type_example_parses(action):
    tags = parse_actions(action.example)

    assert len(tags) == 1
    assert tags[0].type == action.name


def test_tag_error_is_management_error():
    with pytest.raises(ManagementError) as raised:
        parse_actions("no tags here")

    assert raised.value.exit_code == 1
    assert raised.value.line is None


def test_tag_error_keeps_line_and_fix():
    with pytest.raises(TagError) as raised:
        parse_actions('\n\n<action type="upgrade_database" tier="mysql" />')

    assert raised.value.line == 3
    assert raised.value.problem == "unknown tier 'mysql'"
    assert raised.value.fix == "use one of postgres_schema, postgres_database"


def test_long_value_shortened_in_error():
    long_name = "x" * 100
    with pytest.raises(TagError) as raised:
        parse_actions(f'<action type="{long_name}" />')

    assert f"'{'x' * 40}...'" in str(raised.value)
