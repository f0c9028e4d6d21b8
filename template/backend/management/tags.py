"""Parse the action tags that a coding model writes into its reply.

A reply is prose or Markdown with action tags in it. A tag has one of two forms:

    <action type="create_database_model" name="Book">
    title: string(200) required
    </action>

    <action type="migrate_database" message="add book" />

The parser accepts:

- tags anywhere in the text, inside Markdown code fences too; text outside
  the tags is ignored;
- attribute values in double or single quotes, with surrounding spaces
  removed;
- the tag name ``action``, attribute names, the type and boolean values in
  any case, attributes in any order, and spaces and line breaks between them;
  attribute names come back in lowercase, booleans as "true" or "false";
- the entities ``&lt; &gt; &amp; &quot; &apos;`` in attribute values and
  bodies; any other ``&`` is kept as written;
- a body whose first or last line is a Markdown fence (```` ```json ````),
  which is dropped. The rest of the body is dedented and stripped.

Each tag is then checked against ACTION_TYPES: a known type, its required
attributes and no others, valid values, and a body only where the type takes
one. The first problem, in the markup or in a tag, raises TagError with its
line. The scanner is written by hand because an HTML parser repairs broken
markup without saying so, and an XML parser rejects the prose around the tags.
The module uses only the standard library.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from management.errors import ManagementError


class TagError(ManagementError):
    """The text has no action tag, or a tag is malformed."""

    def __init__(self, problem: str, *, fix: str, line: int | None = None):
        self.problem = problem
        self.fix = fix
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{problem}; fix: {fix}")


@dataclass(frozen=True)
class ActionTag:
    """One action tag from the text, checked against its ActionType."""

    type: str
    # Every attribute except type, keyed by lowercase name.
    attributes: dict[str, str]
    # Text between the opening and the closing tag, or "" for a self-closing tag.
    body: str
    # 1-based line of the tag's "<action".
    line: int


@dataclass(frozen=True)
class ActionType:
    """The attributes and the body that one action type accepts."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    body_allowed: bool
    # Help text for the body, or "" when the type takes no body.
    body_help: str
    example: str

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.required + self.optional


ACTION_TYPES: dict[str, ActionType] = {
    action.name: action
    for action in (
        ActionType(
            name="create_database_model",
            required=("name",),
            optional=("fields", "replace"),
            body_allowed=True,
            body_help="one field per line, required unless fields= lists them separated by ;",
            example='<action type="create_database_model" name="Book">title: string(200) required</action>',
        ),
        ActionType(
            name="create_crud_operations",
            required=("model",),
            optional=(),
            body_allowed=False,
            body_help="",
            example='<action type="create_crud_operations" model="Book" />',
        ),
        ActionType(
            name="migrate_database",
            required=(),
            optional=("message", "allow_destructive"),
            body_allowed=False,
            body_help="",
            example='<action type="migrate_database" message="add book" />',
        ),
        ActionType(
            name="seed_database",
            required=(),
            optional=("model", "count", "file"),
            body_allowed=True,
            body_help="rows as JSON, YAML or CSV text, with model= set",
            example='<action type="seed_database" model="Book" count="5" />',
        ),
        ActionType(
            name="upgrade_database",
            required=("tier",),
            optional=(),
            body_allowed=False,
            body_help="",
            example='<action type="upgrade_database" tier="postgres_schema" />',
        ),
    )
}

UPGRADE_TIERS = ("postgres_schema", "postgres_database")
BOOLEAN_VALUES = ("true", "false")
TAG_FORMS = '<action type="..." ...>body</action> or <action type="..." ... />'

# "<action" or "</action" followed by a space, "/", ">" or the end of the text,
# so that words such as "<actions>" in prose are not tags.
TAG_START = re.compile(r"<(/?)action(?=[\s/>]|\Z)", re.IGNORECASE)
CLOSING_TAG = re.compile(r"</action\s*>", re.IGNORECASE)
ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][\w.:-]*")
UNQUOTED_VALUE = re.compile(r"[^\s\"'>]*")
# A value that ends in "name=" most likely lost its closing quote, because the
# quote that ended it was meant to open the next attribute's value.
NEXT_ATTRIBUTE_AT_END = re.compile(r"\s[A-Za-z_][\w.:-]*\s*=\s*$")
FENCE_LINE = re.compile(r"\s*(?:`{3,}|~{3,})\s*[\w+.-]*\s*")
ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
ENTITY = re.compile(r"&(lt|gt|amp|quot|apos);")
DIGITS = re.compile(r"[0-9]+")
MAX_QUOTED_LENGTH = 40


def parse_actions(text: str) -> list[ActionTag]:
    """Parse every action tag in ``text``, in order.

    Raises TagError on the first malformed tag, or when there is no tag.
    """
    text = text.replace("\r\n", "\n")
    tags = [check_tag(raw) for raw in TagScanner(text).scan()]
    if not tags:
        raise TagError(
            "no <action tag found in the text",
            fix=f"write each action as {TAG_FORMS}, for example {ACTION_TYPES['migrate_database'].example}",
        )
    return tags


@dataclass(frozen=True)
class RawAttribute:
    """An attribute as written, before it is checked against the action type."""

    name: str  # lowercase
    value: str  # entities decoded, surrounding spaces removed
    line: int


@dataclass(frozen=True)
class RawTag:
    """A tag as written, before its type and attributes are checked."""

    line: int
    attributes: tuple[RawAttribute, ...]
    body: str | None  # None for a self-closing tag


class TagScanner:
    """Find the action tags in a text and split them into attributes and body."""

    def __init__(self, text: str):
        self.text = text
        self.position = 0

    def line_at(self, position: int) -> int:
        return self.text.count("\n", 0, position) + 1

    def scan(self) -> Iterator[RawTag]:
        """Yield the tags in order, so that an error in an earlier tag comes first."""
        while match := TAG_START.search(self.text, self.position):
            if match.group(1):
                raise TagError(
                    "'</action>' closes no open tag",
                    line=self.line_at(match.start()),
                    fix="remove it, or drop the '/' that ends the tag before it",
                )
            yield self.read_tag(match)

    def read_tag(self, start: re.Match[str]) -> RawTag:
        tag_line = self.line_at(start.start())
        self.position = start.end()
        attributes = self.read_attributes(tag_line)
        if self.text.startswith("/>", self.position):
            self.position += 2
            return RawTag(tag_line, attributes, body=None)
        self.position += 1  # the ">"
        return RawTag(tag_line, attributes, body=self.read_body(tag_line))

    def read_attributes(self, tag_line: int) -> tuple[RawAttribute, ...]:
        """Read attributes up to the "/>" or ">" that ends the opening tag."""
        attributes: list[RawAttribute] = []
        seen: dict[str, str] = {}
        while True:
            had_space = self.skip_spaces()
            if self.position >= len(self.text):
                raise TagError(
                    "unterminated <action tag",
                    line=tag_line,
                    fix="end it with /> or with > followed by a body and </action>",
                )
            if self.text.startswith((">", "/>"), self.position):
                return tuple(attributes)
            name_match = ATTRIBUTE_NAME.match(self.text, self.position)
            if name_match and not had_space:
                raise TagError(
                    f"missing space before attribute {name_match.group()}",
                    line=self.line_at(self.position),
                    fix='separate attributes with spaces, for example name="Book" replace="true"',
                )
            attribute = self.read_attribute()
            if attribute.name in seen:
                raise TagError(
                    f"duplicate attribute {attribute.name} "
                    f"(first {seen[attribute.name]}, then {quote(attribute.value)})",
                    line=attribute.line,
                    fix=f"keep one {attribute.name}= attribute",
                )
            seen[attribute.name] = quote(attribute.value)
            attributes.append(attribute)

    def read_attribute(self) -> RawAttribute:
        line = self.line_at(self.position)
        name_match = ATTRIBUTE_NAME.match(self.text, self.position)
        if not name_match:
            raise TagError(
                f"unexpected character {self.text[self.position]!r} in the <action tag",
                line=line,
                fix='write attributes as name="value" and end the tag with > or />',
            )
        written_name = name_match.group()
        name = written_name.lower()
        self.position = name_match.end()
        self.skip_spaces()
        if not self.text.startswith("=", self.position):
            raise TagError(
                f"attribute {written_name} has no value",
                line=line,
                fix=f'write {written_name}="value", or end the tag before {written_name} with > or /> if it is not an attribute',
            )
        self.position += 1
        self.skip_spaces()
        value = self.read_quoted_value(name, line)
        return RawAttribute(name, decode_entities(value).strip(), line)

    def read_quoted_value(self, name: str, line: int) -> str:
        quote_mark = self.text[self.position : self.position + 1]
        if quote_mark not in ('"', "'"):
            bare = UNQUOTED_VALUE.match(self.text, self.position).group()
            bare = bare.removesuffix("/")
            if not bare:
                raise TagError(
                    f"attribute {name} has no value after =",
                    line=line,
                    fix=f'write {name}="value"',
                )
            raise TagError(
                f"the value of attribute {name} is not quoted: {name}={bare}",
                line=line,
                fix=f'put it in quotes: {name}="{bare}"',
            )
        end = self.text.find(quote_mark, self.position + 1)
        value = self.text[self.position + 1 : end if end != -1 else None]
        if end == -1 or NEXT_ATTRIBUTE_AT_END.search(value) or TAG_START.search(value):
            raise TagError(
                f"the value of attribute {name} has no closing quote (the value read was {quote(value)})",
                line=line,
                fix=f"end the value with {quote_mark} before the next attribute or the end of the tag",
            )
        self.position = end + 1
        return value

    def read_body(self, tag_line: int) -> str:
        """Read up to the matching "</action>" and return the cleaned body."""
        closing = CLOSING_TAG.search(self.text, self.position)
        body_end = closing.start() if closing else len(self.text)
        nested = TAG_START.search(self.text, self.position, body_end)
        if nested and nested.group(1):
            raise TagError(
                f"invalid closing tag {self.quote_line_from(nested.start())}",
                line=self.line_at(nested.start()),
                fix="write the closing tag as </action>",
            )
        if closing is None:
            raise TagError(
                "the <action tag has no closing </action>",
                line=tag_line,
                fix="end the body with </action>, or end a tag without a body with />",
            )
        if nested:
            raise TagError(
                f"an <action tag is inside the body of the tag on line {tag_line}",
                line=self.line_at(nested.start()),
                fix=f"close the tag on line {tag_line} with </action> before the next tag starts",
            )
        body = self.text[self.position : closing.start()]
        self.position = closing.end()
        return clean_body(decode_entities(body))

    def skip_spaces(self) -> bool:
        """Move past spaces and line breaks, and return whether there were any."""
        start = self.position
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1
        return self.position > start

    def quote_line_from(self, position: int) -> str:
        """Quote the text from ``position`` to the end of its line."""
        return quote(self.text[position:].split("\n", 1)[0])


def decode_entities(text: str) -> str:
    """Replace the five XML entities in one pass, so "&amp;lt;" becomes "&lt;"."""
    return ENTITY.sub(lambda match: ENTITIES[match.group(1)], text)


def clean_body(body: str) -> str:
    """Drop fence lines at either end of the body, dedent it and strip it."""
    lines = body.split("\n")
    start, end = trim_blank_lines(lines, 0, len(lines))
    if start < end and FENCE_LINE.fullmatch(lines[start]):
        start += 1
    if start < end and FENCE_LINE.fullmatch(lines[end - 1]):
        end -= 1
    start, end = trim_blank_lines(lines, start, end)
    body_lines = lines[start:end]
    if start == 0 and body_lines:
        # Text that starts right after ">" has lost its indentation, so the
        # other lines are dedented without it.
        rest = textwrap.dedent("\n".join(body_lines[1:]))
        return f"{body_lines[0].strip()}\n{rest}".strip()
    return textwrap.dedent("\n".join(body_lines)).strip()


def trim_blank_lines(lines: list[str], start: int, end: int) -> tuple[int, int]:
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return start, end


def quote(value: str) -> str:
    """Quote a value for a one-line error message, cut to MAX_QUOTED_LENGTH characters."""
    if len(value) > MAX_QUOTED_LENGTH:
        value = value[:MAX_QUOTED_LENGTH] + "..."
    return repr(value)


def check_tag(raw: RawTag) -> ActionTag:
    """Check a tag's type, attributes and body, and build its ActionTag."""
    action = find_action_type(raw)
    attributes: dict[str, str] = {}
    for attribute in raw.attributes:
        if attribute.name == "type":
            continue
        attributes[attribute.name] = check_attribute(action, attribute)
    for name in action.required:
        if name not in attributes:
            raise TagError(
                f"action {action.name} is missing the required attribute {name}",
                line=raw.line,
                fix=f'add {name}="...", for example {action.example}',
            )
    body = raw.body or ""
    if body and not action.body_allowed:
        raise TagError(
            f"action {action.name} takes no body, got {quote(body)}",
            line=raw.line,
            fix=f"move the text out of the tag and end the tag with />, for example {action.example}",
        )
    tag = ActionTag(type=action.name, attributes=attributes, body=body, line=raw.line)
    check_combination = COMBINATION_CHECKS.get(action.name)
    if check_combination:
        check_combination(tag)
    return tag


def find_action_type(raw: RawTag) -> ActionType:
    type_attribute = next((a for a in raw.attributes if a.name == "type"), None)
    valid_types = ", ".join(ACTION_TYPES)
    if type_attribute is None:
        raise TagError(
            "the <action tag has no type attribute",
            line=raw.line,
            fix=f'add type="..." with one of {valid_types}',
        )
    action = ACTION_TYPES.get(type_attribute.value.lower())
    if action is None:
        raise TagError(
            f"unknown action type {quote(type_attribute.value)}",
            line=type_attribute.line,
            fix=f"use one of {valid_types}",
        )
    return action


def check_attribute(action: ActionType, attribute: RawAttribute) -> str:
    """Return the attribute's value, or raise TagError if the action does not take it.

    Boolean values come back in lowercase.
    """
    if attribute.name not in action.attributes:
        raise TagError(
            f"unknown attribute {attribute.name} for action {action.name}",
            line=attribute.line,
            fix=f"use only the attributes type, {', '.join(action.attributes)}",
        )
    if not attribute.value:
        raise TagError(
            f"attribute {attribute.name} is empty",
            line=attribute.line,
            fix=f"give {attribute.name} a value, or leave it out if it is optional",
        )
    check_value = VALUE_CHECKS.get(attribute.name)
    if check_value:
        return check_value(attribute)
    return attribute.value


def check_boolean(attribute: RawAttribute) -> str:
    value = attribute.value.lower()
    if value not in BOOLEAN_VALUES:
        raise TagError(
            f"attribute {attribute.name} must be true or false, got {quote(attribute.value)}",
            line=attribute.line,
            fix=f'write {attribute.name}="true" or {attribute.name}="false"',
        )
    return value


def check_count(attribute: RawAttribute) -> str:
    if not (DIGITS.fullmatch(attribute.value) and int(attribute.value) > 0):
        raise TagError(
            f"count must be a positive integer, got {quote(attribute.value)}",
            line=attribute.line,
            fix='write a whole number of rows from 1 up, for example count="5"',
        )
    return attribute.value


def check_seed_file(attribute: RawAttribute) -> str:
    value = attribute.value
    if "/" in value or "\\" in value or ".." in value:
        raise TagError(
            f"file must be a file name inside backend/seeds/, got {quote(value)}",
            line=attribute.line,
            fix='write the bare file name without / or \\ or .., for example file="books.json"',
        )
    return value


def check_tier(attribute: RawAttribute) -> str:
    if attribute.value not in UPGRADE_TIERS:
        raise TagError(
            f"unknown tier {quote(attribute.value)}",
            line=attribute.line,
            fix=f"use one of {', '.join(UPGRADE_TIERS)}",
        )
    return attribute.value


# Each check returns the value to store, or raises TagError.
VALUE_CHECKS: dict[str, Callable[[RawAttribute], str]] = {
    "replace": check_boolean,
    "allow_destructive": check_boolean,
    "count": check_count,
    "file": check_seed_file,
    "tier": check_tier,
}


def check_model_fields(tag: ActionTag) -> None:
    """Require the fields in the body or in fields=, but not in both."""
    example = ACTION_TYPES["create_database_model"].example
    if not tag.body and "fields" not in tag.attributes:
        raise TagError(
            f"action create_database_model for {tag.attributes['name']} has no fields",
            line=tag.line,
            fix=f'write one field per line in the body, for example {example}, or fields="title: string(200); year: integer"',
        )
    if tag.body and "fields" in tag.attributes:
        raise TagError(
            f"action create_database_model for {tag.attributes['name']} has fields both in the body and in fields=",
            line=tag.line,
            fix="keep the fields in one place: the body or fields=",
        )


def check_seed_source(tag: ActionTag) -> None:
    """Require model= with a body, and at most one of body, file= and count=."""
    if tag.body and "model" not in tag.attributes:
        raise TagError(
            "action seed_database has rows in the body but no model",
            line=tag.line,
            fix='add model="..." with the model the rows belong to',
        )
    sources = [name for name in ("file", "count") if name in tag.attributes]
    if tag.body:
        sources.insert(0, "body")
    if len(sources) > 1:
        raise TagError(
            f"action seed_database has both {sources[0]} and {sources[1]}",
            line=tag.line,
            fix="give rows in the body, or a file=, or count= sample rows, but only one of them",
        )


COMBINATION_CHECKS: dict[str, Callable[[ActionTag], None]] = {
    "create_database_model": check_model_fields,
    "seed_database": check_seed_source,
}
