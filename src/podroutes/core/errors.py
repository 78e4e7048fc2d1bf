"""The one exception family podroutes raises, with a subclass per stage.

Pure: no I/O. The library raises these; only the CLI turns them into messages and exit
statuses. Each class is also the matching built-in exception where that helps callers
that do not know podroutes (``ValueError`` for bad input, ``ConnectionError`` for a host
that cannot be reached, ``OSError`` for a host command that failed).
"""

from __future__ import annotations

from dataclasses import dataclass


class PodroutesError(Exception):
    """Base of every error podroutes raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One located defect in an input: which file, which line, which field, and why."""

    source: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.field}: {self.message}"


class InventoryError(PodroutesError, ValueError):
    """The inventory was rejected. Carries every located problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.source, p.line))
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(PodroutesError, ValueError):
    """A flag or argument was rejected (not the inventory itself)."""


class TransportError(PodroutesError, ConnectionError):
    """A host could not be reached, or the connection broke mid-step."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        self.detail = message
        super().__init__(f"{host}: {message}")


class HostCommandError(PodroutesError, OSError):
    """A command ran on a host and failed; keeps the host's own stderr and exit status."""

    def __init__(self, host: str, command: str, status: int, stderr: str) -> None:
        self.host = host
        self.command = command
        self.status = status
        self.stderr = stderr.strip()
        super().__init__(f"{host}: `{command}` exited {status}: {self.stderr}")


class ParseError(PodroutesError, ValueError):
    """Output read back from a host could not be understood."""


class LabError(PodroutesError, RuntimeError):
    """The lab could not be built, inspected or torn down."""


class PersistError(PodroutesError, ValueError):
    """A host's routes cannot be persisted as asked: no manager found, a manager too old,
    a configuration podroutes must not edit. Says what to do instead."""
