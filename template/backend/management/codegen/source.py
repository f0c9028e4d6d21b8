"""Python source text the way ``ruff format`` lays it out.

Generated files must pass ``ruff format --check`` even in a project where ruff
is not installed. So the few constructs the generator writes are laid out here
by the formatter's rules. A call that does not fit in 88 columns is split
inside its parentheses, first onto one indented line, then one argument per
line with a trailing comma.
"""

from __future__ import annotations

from dataclasses import dataclass

LINE_LENGTH = 88
INDENT = "    "


@dataclass(frozen=True)
class Call:
    """A call ``name(arg, ...)`` or subscript ``name[arg, ...]``; arguments are text or Calls."""

    name: str
    args: tuple[str | Call, ...] = ()
    brackets: str = "()"

    def flat(self) -> str:
        inner = ", ".join(flat(arg) for arg in self.args)
        return f"{self.name}{self.brackets[0]}{inner}{self.brackets[1]}"


def flat(node: str | Call) -> str:
    return node if isinstance(node, str) else node.flat()


def layout(
    prefix: str, node: str | Call, suffix: str = "", indent: str = ""
) -> list[str]:
    """Return the lines of ``prefix + node + suffix``, split to fit LINE_LENGTH."""
    line = f"{indent}{prefix}{flat(node)}{suffix}"
    if len(line) <= LINE_LENGTH or isinstance(node, str) or not node.args:
        return [line]
    opening = f"{indent}{prefix}{node.name}{node.brackets[0]}"
    closing = f"{indent}{node.brackets[1]}{suffix}"
    if len(opening) > LINE_LENGTH and prefix.endswith("= "):
        # Not even the opening bracket fits: wrap the whole right-hand side.
        inner_lines = layout("", node, "", indent + INDENT)
        return [f"{indent}{prefix}(", *inner_lines, f"{indent}){suffix}"]
    inner = f"{indent}{INDENT}{', '.join(flat(arg) for arg in node.args)}"
    if len(inner) <= LINE_LENGTH:
        return [opening, inner, closing]
    lines = [opening]
    for arg in node.args:
        lines.extend(layout("", arg, ",", indent + INDENT))
    lines.append(closing)
    return lines


def py_string(value: str) -> str:
    """Return a string literal with the quotes ruff prefers."""
    if '"' in value and "'" not in value:
        return "'" + value.replace("\\", "\\\\") + "'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
