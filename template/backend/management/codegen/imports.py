"""Merge import statements into a module's leading import block.

The block is rewritten in the order ruff's isort rules expect: ``__future__``,
the standard library, third-party packages, then the project's own modules,
each group with plain ``import`` lines first. Imports the file already had are
kept, with their aliases.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

from management.codegen.source import INDENT, LINE_LENGTH

FUTURE, STDLIB, THIRD_PARTY, FIRST_PARTY = range(4)


@dataclass
class ImportBlock:
    """The imports of one module: plain imports and from-imports by module."""

    modules: set[tuple[str, str | None]] = field(default_factory=set)
    names: dict[str, set[tuple[str, str | None]]] = field(default_factory=dict)

    def add_module(self, module: str, alias: str | None = None) -> None:
        self.modules.add((module, alias))

    def add_name(self, module: str, name: str, alias: str | None = None) -> None:
        self.names.setdefault(module, set()).add((name, alias))

    def render(self, project_dir: Path) -> list[str]:
        groups: dict[int, list[str]] = {}
        for module, alias in sorted(
            self.modules, key=lambda item: (item[0].lower(), item[1] or "")
        ):
            line = f"import {module}" + (f" as {alias}" if alias else "")
            groups.setdefault(section(module, project_dir), []).append(line)
        for module in sorted(self.names, key=str.lower):
            names = sorted(self.names[module], key=name_sort_key)
            parts = [name + (f" as {alias}" if alias else "") for name, alias in names]
            groups.setdefault(section(module, project_dir), []).extend(
                from_import(module, parts)
            )
        lines: list[str] = []
        for key in sorted(groups):
            if lines:
                lines.append("")
            lines.extend(groups[key])
        return lines


def name_sort_key(item: tuple[str, str | None]) -> tuple[int, str]:
    # isort's order-by-type: CONSTANTS, then Classes, then functions and variables.
    name = item[0]
    if name.isupper() and len(name) > 1:
        rank = 0
    elif name[:1].isupper():
        rank = 1
    else:
        rank = 2
    return rank, name.lower()


def from_import(module: str, parts: list[str]) -> list[str]:
    line = f"from {module} import {', '.join(parts)}"
    if len(line) <= LINE_LENGTH:
        return [line]
    return [f"from {module} import ("] + [f"{INDENT}{part}," for part in parts] + [")"]


def section(module: str, project_dir: Path) -> int:
    top = module.split(".")[0]
    if top == "__future__":
        return FUTURE
    if top in sys.stdlib_module_names:
        return STDLIB
    if (project_dir / f"{top}.py").exists() or (
        project_dir / top / "__init__.py"
    ).exists():
        return FIRST_PARTY
    return THIRD_PARTY


def leading_imports(tree: ast.Module) -> list[ast.stmt]:
    """Return the import statements at the top of a module, after its docstring."""
    body = list(tree.body)
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(getattr(body[0], "value", None), ast.Constant)
    ):
        body = body[1:]
    statements = []
    for node in body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            break
        statements.append(node)
    return statements


def merge_imports(source: str, required: ImportBlock, project_dir: Path) -> str:
    """Return ``source`` with ``required`` merged into its leading import block."""
    tree = ast.parse(source)
    statements = leading_imports(tree)
    block = ImportBlock()
    for node in statements:
        if isinstance(node, ast.Import):
            for alias in node.names:
                block.add_module(alias.name, alias.asname)
        else:
            for alias in node.names:
                block.add_name(
                    "." * node.level + (node.module or ""), alias.name, alias.asname
                )
    before = len(block.modules) + sum(len(names) for names in block.names.values())
    for item in required.modules:
        block.modules.add(item)
    for module, names in required.names.items():
        for name, alias in names:
            block.add_name(module, name, alias)
    after = len(block.modules) + sum(len(names) for names in block.names.values())
    if after == before:
        return source

    lines = source.splitlines()
    if statements:
        start = statements[0].lineno - 1
        end = statements[-1].end_lineno
    else:
        start = end = first_statement_line(tree)
    new_block = block.render(project_dir)
    rest = lines[end:]
    while rest and not rest[0].strip():
        rest = rest[1:]
    head = lines[:start]
    while head and not head[-1].strip():
        head = head[:-1]
    separator = [""] if head else []
    gap = (
        ["", ""]
        if rest and rest[0].startswith(("def ", "class ", "@", "async def "))
        else [""]
    )
    return "\n".join(head + separator + new_block + gap + rest) + "\n"


def first_statement_line(tree: ast.Module) -> int:
    body = tree.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(getattr(body[0], "value", None), ast.Constant)
    ):
        return body[0].end_lineno
    return 0
