"""The sandbox interface: a workspace where untrusted tool calls run, with limits.

Backends (``bwrap``, ``docker``) implement :class:`Sandbox`; :func:`open_sandbox` picks one by
name. Every run returns a :class:`RunResult` that says which limit, if any, was hit.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from trajgym.errors import TrajgymError

LimitHit = Literal["timeout", "cpu", "memory", "file_size", "processes", "output"]


class SandboxError(TrajgymError):
    """A bad sandbox request: unknown backend, missing workspace, engine not reachable, ..."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of every run in a sandbox."""

    timeout_s: float = 10.0          # wall clock; the whole process tree is killed past it
    cpu_s: int = 10                  # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 512             # address space (RLIMIT_AS) / container memory
    file_size_mb: int = 64           # largest file a run may write (RLIMIT_FSIZE)
    processes: int = 64              # processes/threads (RLIMIT_NPROC / pids limit)
    output_bytes: int = 64_000       # stdout and stderr are each truncated past this, with a marker
    flood_bytes: int = 32 * 1024 * 1024  # a run whose stdout+stderr pass this is killed ("output")
    tmp_mb: int = 64                 # size of the private /tmp (a tmpfs, so it counts in memory)


@dataclass
class RunResult:
    """What one run did."""

    exit_code: int | None            # None when the process was killed and gave no code
    stdout: str
    stderr: str
    wall_s: float
    limit_hit: LimitHit | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    signal: int | None = None        # the signal that ended the process, if any
    limits_hit: list[LimitHit] = field(default_factory=list)  # every limit met, limit_hit first

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.limit_hit is None

    @property
    def timed_out(self) -> bool:
        return self.limit_hit == "timeout" or "timeout" in self.limits_hit


@dataclass
class Snapshot:
    """The workspace's files at one moment (a tar archive in memory)."""

    data: bytes
    files: list[str] = field(default_factory=list)


class Sandbox(abc.ABC):
    """A workspace (a writable directory, seen as ``/workspace`` inside) and a way to run in it."""

    backend: str
    isolation: str  # what isolation the backend really got, in words

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    @abc.abstractmethod
    def put_file(self, path: str, data: bytes | str) -> None:
        """Write a file at ``path`` (relative to the workspace), creating folders."""

    @abc.abstractmethod
    def get_file(self, path: str) -> bytes:
        """Read a file of the workspace; SandboxError if it does not exist."""

    @abc.abstractmethod
    def list_files(self) -> list[str]:
        """Every file of the workspace, as sorted relative paths."""

    @abc.abstractmethod
    def run(self, command: str | list[str], *, timeout_s: float | None = None,
            stdin: str | None = None) -> RunResult:
        """Run a shell command (a string, run by ``sh -c``) or an argv list in the workspace."""

    def run_python(self, code: str, *, timeout_s: float | None = None) -> RunResult:
        """Run a piece of Python in the workspace."""
        return self.run(["python3", "-c", code], timeout_s=timeout_s)

    @abc.abstractmethod
    def snapshot(self) -> Snapshot:
        """The workspace's files, to restore later."""

    @abc.abstractmethod
    def restore(self, snapshot: Snapshot) -> None:
        """Put the workspace back as it was at ``snapshot``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Kill what still runs and free the workspace. Idempotent."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
