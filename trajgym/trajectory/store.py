"""Trajectory files: JSONL, one episode a line, append-only, flushed per episode and fsynced.

A crash can at worst leave a partial last line; :func:`read` reports it with its line number and
:func:`iter_episodes` can skip it, so nothing written before is lost (when the machine itself
crashes, nothing written before the last fsync: see :class:`TrajectoryWriter`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from trajgym import jsonio
from trajgym._version import __version__
from trajgym.errors import TrajectoryFileError
from trajgym.trajectory.lines import decode_object, open_lines
from trajgym.trajectory.schema import INFRA_ERROR, TRAJECTORY_VERSION, Trajectory
from trajgym.trajectory.units import Head, UnitKey, finished, unit_key
from trajgym.trajectory.v1 import upgrade

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


FSYNC_INTERVAL_S = 0.1
"""How often a writer's thread fsyncs its file while lines are being written (seconds; see
:class:`TrajectoryWriter`)."""


class TrajectoryWriter:
    """Appends episodes to a JSONL file. Use as a context manager.

    Each episode is written and flushed as one line at once, so a process that dies loses none of
    the episodes written before. With ``fsync`` (the default) a thread of the writer also fsyncs the
    file, off the caller's thread and event loop, every ``fsync_interval_s`` while lines are being
    written: one fsync covers every line written before it starts. So a crash of the machine itself
    loses at most the lines of the last interval (a resumed job plays those units again), and
    :meth:`close` returns once every line is on disk. An fsync takes milliseconds (4 ms on the
    development machine), more than an episode's whole CPU time at 1,000 episodes in flight: one
    per line (about 250 a second there) cost the job 3% of its episodes/s, against 10 a second.
    """

    def __init__(self, path: str | Path, *, fsync: bool = True,
                 fsync_interval_s: float = FSYNC_INTERVAL_S) -> None:
        if not fsync_interval_s > 0:
            raise ValueError(f"fsync_interval_s must be above 0, got {fsync_interval_s}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = self.path.open("ab")
        self._syncer = _Syncer(self._fh.fileno(), self.path, fsync_interval_s) if fsync else None
        self.count = 0

    def write(self, trajectory: dict[str, Any]) -> None:
        """Write one episode as one line and flush it; the writer's thread fsyncs it within the interval."""
        self.write_line(jsonio.dumps_line(trajectory))

    def write_line(self, line: bytes) -> None:
        """Write one episode already encoded as its line (ending in a newline), as :meth:`write`."""
        self.write_lines([line])

    def write_lines(self, lines: list[bytes]) -> None:
        """Write episodes already encoded as lines (each ending in a newline) and flush them together:
        one system call for a batch a worker process sent."""
        if not lines:
            return
        self._fh.write(b"".join(lines) if len(lines) > 1 else lines[0])
        self._fh.flush()
        if self._syncer is not None:
            self._syncer.written()
        self.count += len(lines)

    def close(self) -> None:
        """Wait for the last fsync, then close the file (idempotent)."""
        syncer, self._syncer = self._syncer, None
        try:
            if syncer is not None:
                syncer.close()
        finally:
            self._fh.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _Syncer:
    """A thread that fsyncs ``fd`` every ``interval`` seconds if lines were written since its last
    fsync began, and once more when closed. The writer only counts its writes (:meth:`written`):
    no lock and no wake-up per line."""

    def __init__(self, fd: int, path: Path, interval: float) -> None:
        self._fd = fd
        self._path = path
        self._interval = interval
        self._cond = threading.Condition()
        self._written = 0  # counted by the writer's thread only; read by this one
        self._closing = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name=f"trajgym-fsync {path.name}", daemon=True)
        self._thread.start()

    def written(self) -> None:
        """Lines were written (called by the writer's thread); raises the error of a failed fsync."""
        self._raise()
        self._written += 1

    def _raise(self) -> None:
        if self._error is not None:
            raise TrajectoryFileError(self._path, 0, f"cannot fsync: {self._error.strerror or self._error}")

    def _run(self) -> None:
        synced = 0
        closing = False
        while not (closing and synced == self._written):
            with self._cond:
                closing = self._cond.wait_for(lambda: self._closing, timeout=self._interval)
            target = self._written
            if target == synced:
                continue
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._error = exc
                return
            synced = target

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        self._raise()


WHAT = "trajectory"


class _HeadLine(BaseModel):
    """The fields of a trajectory line that pick it (:class:`~trajgym.trajectory.units.Head`); the
    rest of the line is checked by the JSON parser but never built into Python objects."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int
    scenario_id: str
    seed: int
    trial: int
    policy: str | None = None
    termination: str
    episode_id: str
    scenario_path: str
    scenario_hash: str
    max_turns: int | None = None


def _decode(path: Path, n: int, raw: bytes, torn: bool) -> dict[str, Any]:
    """Line ``n`` decoded, version checked, a version 1 line upgraded; else a located error."""
    data = decode_object(path, n, raw, torn, WHAT)
    version = data.get("schema_version")
    if version == TRAJECTORY_VERSION:
        return data
    if version == 1:
        try:
            return upgrade(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise TrajectoryFileError(path, n, f"a broken schema 1 trajectory: {exc}") from None
    if "scored_version" in data:
        raise TrajectoryFileError(path, n, "a scored trajectory (trajgym score output), not a trajectory: give the "
                                           "file the rollout wrote, or read it as scored records")
    if version is None:
        raise TrajectoryFileError(path, n, "not a trajectory (no schema_version): expected a line written by "
                                           "`trajgym rollout`")
    raise TrajectoryFileError(path, n, f"trajectory schema_version {version!r} is not supported "
                                       f"(this trajgym reads 1 and {TRAJECTORY_VERSION})")


def _skip(path: Path, n: int, torn: bool, skip_torn: bool) -> bool:
    if torn and skip_torn:
        log.warning("%s:%d: skipped the torn last line of a killed job", path, n)
        return True
    return False


def parse_trajectory(path: str | Path, n: int, raw: bytes, torn: bool = False) -> Trajectory:
    """Line ``n`` of a trajectory file as a validated model (version 1 upgraded), or a located error."""
    try:
        return Trajectory.model_validate_json(raw)
    except ValidationError:
        pass
    return _validated(Path(path), n, _decode(Path(path), n, raw, torn))


def _validated(path: Path, n: int, data: dict[str, Any]) -> Trajectory:
    try:
        return Trajectory.model_validate(data)
    except ValidationError as exc:
        raise TrajectoryFileError(path, n, f"not a valid trajectory ({_first_error(exc)})") from None


def _first_error(exc: ValidationError) -> str:
    """The first problem of a validation error, as ``field.path: message``."""
    error = exc.errors(include_url=False)[0]
    return f"{'.'.join(map(str, error['loc'])) or 'the line'}: {error['msg']}"


def iter_episodes(path: str | Path, *, validate: bool = True, skip_torn: bool = False) -> Iterator[dict[str, Any]]:
    """Yield each episode of a trajectory file as a dict of schema version 2 (a version 1 line is
    upgraded), validated against the schema unless ``validate`` is false. Every bad line is a
    :class:`TrajectoryFileError` naming the file and line; ``skip_torn`` leaves out a torn last line
    (a job killed mid-write) with a warning instead."""
    p = Path(path)
    for n, raw, torn in open_lines(p, WHAT):
        data = _decode_or_skip(p, n, raw, torn, skip_torn)
        if data is None:
            continue
        if validate:
            _validated(p, n, data)
        yield data


def _decode_or_skip(path: Path, n: int, raw: bytes, torn: bool, skip_torn: bool) -> dict[str, Any] | None:
    """:func:`_decode`, or None for a torn last line that ``skip_torn`` leaves out."""
    try:
        return _decode(path, n, raw, torn)
    except TrajectoryFileError:
        if _skip(path, n, torn, skip_torn):
            return None
        raise


def read_heads(path: str | Path, *, skip_torn: bool = False) -> Iterator[tuple[int, Head]]:
    """(line number, :class:`~trajgym.trajectory.units.Head`) of every episode line of a trajectory
    file, reading only the fields that pick a line (a version 1 line is upgraded whole)."""
    p = Path(path)
    for n, raw, torn in open_lines(p, WHAT):
        try:
            line = _HeadLine.model_validate_json(raw)
        except ValidationError:
            line = None
        written = line.schema_version if line is not None else TRAJECTORY_VERSION
        if line is None or line.schema_version != TRAJECTORY_VERSION or line.policy is None:
            data = _decode_or_skip(p, n, raw, torn, skip_torn)
            if data is None:
                continue
            try:  # the fields that pick a line, typed: a unit key of a list or a null path is no key
                line = _HeadLine.model_validate(data)
            except ValidationError as exc:
                raise TrajectoryFileError(p, n, f"not a valid trajectory ({_first_error(exc)})") from None
        if line.policy is None:
            raise TrajectoryFileError(p, n, "not a valid trajectory (policy: Field required)")
        key = UnitKey(line.scenario_id, line.seed, line.trial, line.policy)
        yield n, Head(key, line.termination == INFRA_ERROR, line.episode_id, line.scenario_path,
                      line.scenario_hash, line.max_turns, written)


def latest_per_unit(path: str | Path, *, validate: bool = True,
                    skip_torn: bool = True) -> dict[UnitKey, dict[str, Any]]:
    """The episode that counts for each finished work unit of a job's output
    (:func:`trajgym.trajectory.units.counting`: its latest line that did not end in
    ``infra_error``), keyed by :class:`UnitKey` in the order of the file; a unit with only
    ``infra_error`` lines is left out. A torn last line (a killed job) is skipped with a warning
    unless ``skip_torn`` is false."""
    wanted = {n for n, _ in finished(read_heads(path, skip_torn=skip_torn))}
    p = Path(path)
    out: dict[UnitKey, dict[str, Any]] = {}
    for n, raw, torn in open_lines(p, WHAT):
        if n in wanted:
            ep = _decode(p, n, raw, torn)
            if validate:
                _validated(p, n, ep)
            out[unit_key(ep)] = ep
    return out


def episode_at(path: str | Path, line: int) -> dict[str, Any]:
    """The episode on line ``line`` of a trajectory file (numbered as :func:`read_heads` numbers
    them), validated, as a dict of schema version 2; a located error if it is not one."""
    p = Path(path)
    for n, raw, torn in open_lines(p, WHAT):
        if n == line:
            data = _decode(p, n, raw, torn)
            _validated(p, n, data)
            return data
    raise TrajectoryFileError(p, line, "no such line (the file changed while it was read?)")


def repair_torn_tail(path: str | Path) -> Path | None:
    """Make a crashed writer's file valid JSONL again: a last line without its newline is moved to
    ``<file>.torn-<time>`` and cut off (or, if it is a whole episode, just given its newline).
    Complete lines are never touched. Returns where the torn piece went, or None."""
    p = Path(path)
    with p.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return None
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return None
        start, pos = 0, size
        while pos > 0:  # find the last newline, reading backwards
            lo = max(0, pos - 65536)
            fh.seek(lo)
            i = fh.read(pos - lo).rfind(b"\n")
            if i >= 0:
                start = lo + i + 1
                break
            pos = lo
        fh.seek(start)
        tail = fh.read()
        try:
            whole = json.loads(tail)
        except ValueError:
            whole = None
        if isinstance(whole, dict) and whole.get("schema_version") in (1, TRAJECTORY_VERSION):
            fh.write(b"\n")
            fh.flush()
            os.fsync(fh.fileno())
            return None
        aside = p.with_name(f"{p.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        with aside.open("wb") as out:
            out.write(tail)
            out.flush()
            os.fsync(out.fileno())
        fh.truncate(start)
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("%s: moved a partial last line (%d bytes) to %s", p, len(tail), aside)
    return aside


def read(path: str | Path) -> list[Trajectory]:
    """Every episode of a file, as validated models (version 1 lines upgraded)."""
    p = Path(path)
    return [parse_trajectory(p, n, raw, torn) for n, raw, torn in open_lines(p, WHAT)]


def strip_wall(obj: Any) -> Any:
    """A copy of ``obj`` without any ``wall_*`` field (for determinism comparisons)."""
    if isinstance(obj, dict):
        return {k: strip_wall(v) for k, v in obj.items() if not k.startswith("wall_")}
    if isinstance(obj, list):
        return [strip_wall(v) for v in obj]
    return obj
