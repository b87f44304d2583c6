"""Trajectory files: JSONL, one episode a line, append-only, flushed and fsynced per episode.

A crash can at worst leave a partial last line; :func:`read` reports it with its line number and
:func:`iter_episodes` can skip it, so nothing written before is lost.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pydantic import ValidationError

from trajgym._version import __version__
from trajgym.errors import TrajectoryFileError
from trajgym.trajectory.schema import TRAJECTORY_VERSION, Trajectory

log = logging.getLogger(__name__)


@functools.cache
def git_revision() -> str | None:
    """The git commit of the trajgym source, when it runs from a checkout."""
    root = Path(__file__).resolve().parent.parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(command: str | None = None) -> dict[str, Any]:
    return {"trajgym_version": __version__, "git_revision": git_revision(),
            "python": platform.python_version(), "command": command}


class TrajectoryWriter:
    """Appends episodes to a JSONL file. Use as a context manager."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = self.path.open("a", encoding="utf-8")
        self._fsync = fsync
        self.count = 0

    def write(self, trajectory: dict[str, Any]) -> None:
        """Write one episode as one line, then flush (and fsync) it."""
        line = json.dumps(trajectory, ensure_ascii=False, separators=(",", ":"))
        self._fh.write(line + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def iter_episodes(path: str | Path, *, validate: bool = True, skip_broken: bool = False) -> Iterator[dict[str, Any]]:
    """Yield each episode of a JSONL file as a dict (validated against the schema by default)."""
    p = Path(path)
    try:
        fh = p.open(encoding="utf-8")
    except OSError as exc:
        raise TrajectoryFileError(p, 0, f"cannot open: {exc.strerror}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError("a line must be a JSON object")
                version = data.get("schema_version")
                if version != TRAJECTORY_VERSION:
                    raise ValueError(f"trajectory schema_version {version!r} is not supported "
                                     f"(this trajgym reads {TRAJECTORY_VERSION})")
                if validate:
                    Trajectory.model_validate(data)
            except (ValueError, ValidationError) as exc:
                if skip_broken:
                    log.warning("%s:%d: skipped: %s", p, n, str(exc).splitlines()[0])
                    continue
                raise TrajectoryFileError(p, n, str(exc).splitlines()[0]) from None
            yield data


def read(path: str | Path) -> list[Trajectory]:
    """Every episode of a file, as validated models."""
    return [Trajectory.model_validate(d) for d in iter_episodes(path, validate=False)]


def strip_wall(obj: Any) -> Any:
    """A copy of ``obj`` without any ``wall_*`` field (for determinism comparisons)."""
    if isinstance(obj, dict):
        return {k: strip_wall(v) for k, v in obj.items() if not k.startswith("wall_")}
    if isinstance(obj, list):
        return [strip_wall(v) for v in obj]
    return obj
