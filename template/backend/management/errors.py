"""Errors raised by the management commands.

Each error carries one line for a person or an agent to read: what is wrong,
with the bad value, and how to fix it. Only the command line catches them.
"""

from __future__ import annotations


class ManagementError(Exception):
    """A command failed. The message gives the reason and the next step."""

    exit_code = 1


class UsageError(ManagementError):
    """A command was called with invalid arguments."""

    exit_code = 2


class SpecError(ManagementError):
    """A model spec does not follow the field grammar."""

    def __init__(
        self,
        problem: str,
        *,
        fix: str,
        model: str | None = None,
        field: str | None = None,
    ):
        self.problem = problem
        self.fix = fix
        self.model = model
        self.field = field
        where = ""
        if model and field:
            where = f"model {model}, field {field}: "
        elif model:
            where = f"model {model}: "
        super().__init__(f"{where}{problem}; fix: {fix}")
