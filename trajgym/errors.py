"""One error hierarchy for trajgym.

Every user-facing error says what was wrong, where (file, line, column or field) and, where it can,
how to fix it. The CLI prints these without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class TrajgymError(Exception):
    """Base class of every error trajgym raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem in an input file. Lines and columns are 1-based."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class LocatedError(TrajgymError):
    """An input file with located problems: carries every problem found, each located in its file.

    The message is one ``file:line:col: message`` line per problem, in file order.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ScenarioError(LocatedError):
    """A scenario file is broken. Carries every problem found, each located in the file."""


class ConfigFileError(LocatedError):
    """A config file (a job, a scorer config, a filter chain) is broken. Carries every problem found,
    each located in the file."""


class UnknownScenarioError(TrajgymError):
    """A scenario id or path that names nothing."""


class UnknownDomainError(TrajgymError):
    """A scenario names a domain that trajgym does not provide."""


class ToolCallError(TrajgymError):
    """A tool was called badly (unknown tool, bad arguments, refused by the world).

    Raised inside a tool; the env turns it into an error result for the caller, never a crash.
    """

    def __init__(self, message: str, *, error_type: str = "invalid_request") -> None:
        self.error_type = error_type
        super().__init__(message)


class InfraError(TrajgymError):
    """The infrastructure failed, not the agent: a model server that timed out, answered 5xx or was
    unreachable after every retry. The episode is recorded as ``infra_error``, kept out of scoring
    and run again on resume."""


class TrajectoryFileError(TrajgymError):
    """A trajectory file that cannot be read: a broken line, an unknown schema version."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class ReportError(TrajgymError):
    """A report could not be made: nothing to report on, or the ``report`` extra is missing."""
