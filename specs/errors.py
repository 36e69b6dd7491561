"""The one small exception tree of recon, and diagnostics for spec problems.

Library code raises; only the CLI turns an exception into one sentence and an exit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    CHANGES = 2
    REFUSED = 3
    INTERRUPTED = 130


@dataclass(frozen=True)
class Diagnostic:
    """One problem in the specs: where it is, what is wrong, how to fix it."""

    summary: str
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    field: str | None = None  # dotted path inside the document, e.g. spec.resources[2].mode
    hint: str | None = None

    def location(self) -> str:
        if self.file is None:
            return ""
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self) -> str:
        head = self.location()
        text = f"{head}: " if head else ""
        if self.field:
            text += f"{self.field}: "
        text += self.summary
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class ReconError(Exception):
    """Base of every error recon expects; the CLI maps each to an exit code."""

    exit_code: ExitCode = ExitCode.ERROR


class SpecError(ReconError):
    """The specs are invalid; carries every diagnostic of the run."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        noun = "problem" if len(diagnostics) == 1 else "problems"
        super().__init__(f"{len(diagnostics)} {noun} in the specs")


class UsageError(ReconError):
    """A command-line argument or input file is wrong."""


class TransportError(ReconError):
    """A target could not be reached or a remote command could not be run."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class StalePlanError(ReconError):
    """The live state or the specs moved since the saved plan was made."""

    def __init__(self, problems: list[str], replan: str) -> None:
        self.problems = problems
        self.replan = replan
        super().__init__("the saved plan is stale")


class RefusedError(ReconError):
    """Apply was refused: it needs a confirmation that was not given."""

    exit_code = ExitCode.REFUSED


def reason_of(exc: BaseException) -> str:
    """The words of the innermost cause of a client library's error (requests wraps urllib3, which wraps the
    socket's error): 'Connection refused', 'No such file or directory', not 'ConnectionError'."""
    root = exc
    for _ in range(6):
        inner = [c for c in (getattr(root, "reason", None), root.args[-1] if root.args else None, root.__cause__)
                 if isinstance(c, BaseException)]
        if not inner:
            break
        root = inner[0]
    return getattr(root, "strerror", None) or str(root).rsplit(": ", 1)[-1] or type(root).__name__
