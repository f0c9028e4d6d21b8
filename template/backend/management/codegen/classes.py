"""Add, compare and replace the attributes of a class in existing source.

The edits work on line ranges found through the syntax tree, so everything
else in the file, comments and hand-written methods included, stays as it is.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from management.errors import ManagementError


@dataclass(frozen=True)
class Member:
    """One class attribute as generated: its name and its source lines."""

    name: str
    lines: list[str]


@dataclass
class ClassChanges:
    """Comparison of one class's attributes with the generated ones."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[dict[str, str]] = field(default_factory=list)
    removed: list[dict[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed)


def class_node(tree: ast.Module, name: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise ManagementError(
        f"class {name} not found; it may have been renamed or removed by hand"
    )


def attribute_spans(node: ast.ClassDef) -> dict[str, tuple[int, int]]:
    """Return the first and last line (1-based) of each annotated attribute."""
    spans = {}
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(
            statement.target, ast.Name
        ):
            spans[statement.target.id] = (statement.lineno, statement.end_lineno)
    return spans


def update_class(
    source: str,
    class_name: str,
    members: list[Member],
    *,
    replace: bool,
    keep: set[str] = frozenset(),
) -> tuple[str, ClassChanges]:
    """Bring a class's annotated attributes in line with ``members``.

    Missing attributes are appended to the class body. An attribute whose
    source differs is replaced only when ``replace`` is true, and with
    ``replace`` annotated attributes that ``members`` lacks are removed,
    except the names in ``keep``. Without ``replace``, differences are only
    reported in the returned ClassChanges, and the source keeps them.
    """
    lines = source.splitlines()
    node = class_node(ast.parse(source), class_name)
    spans = attribute_spans(node)
    changes = ClassChanges()
    edits: list[tuple[int, int, list[str]]] = []  # (first line, last line, new lines)
    additions: list[str] = []
    generated_names = {member.name for member in members}

    for member in members:
        if member.name not in spans:
            additions.extend(member.lines)
            changes.added.append(member.name)
            continue
        first, last = spans[member.name]
        current = lines[first - 1 : last]
        if current == member.lines:
            changes.unchanged.append(member.name)
            continue
        changes.replaced.append(
            {
                "name": member.name,
                "old": "\n".join(current),
                "new": "\n".join(member.lines),
            }
        )
        if replace:
            edits.append((first, last, member.lines))

    for name, (first, last) in spans.items():
        if name in generated_names or name in keep:
            continue
        old = "\n".join(lines[first - 1 : last])
        if replace:
            changes.removed.append({"name": name, "old": old})
            edits.append((first, last, []))

    if additions:
        body_end = node.body[-1].end_lineno
        if len(node.body) == 1 and isinstance(node.body[0], ast.Pass):
            edits.append((node.body[0].lineno, body_end, additions))
        else:
            edits.append((body_end + 1, body_end, additions))

    for first, last, new_lines in sorted(edits, key=lambda edit: edit[0], reverse=True):
        lines[first - 1 : last] = new_lines
    if not additions and len(changes.removed) == len(node.body):
        # Every statement of the class went away, and a class body cannot be empty.
        lines.insert(node.body[0].lineno - 1, "    pass")
    return "\n".join(lines) + "\n", changes
