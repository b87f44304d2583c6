"""A job's output file: one job at a time, and what it already holds when a job resumes.

A job appends to its JSONL file under an exclusive lock (:func:`exclusive`): two jobs never write
one file. A non-empty file is refused unless the job resumes; then a torn last line (a killed job)
is moved aside and the units the file holds with a normal ending are skipped
(:func:`prepare_output`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from trajgym.errors import TrajgymError
from trajgym.rollout.runner import WorkUnit
from trajgym.trajectory.schema import TRAJECTORY_VERSION
from trajgym.trajectory.store import read_heads, repair_torn_tail
from trajgym.trajectory.units import UnitKey, counting


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX), so two jobs never append to one file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrajgymError(f"{path} is being written by another running job") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def finished_units(out: Path, units: list[WorkUnit]) -> set[UnitKey]:
    """Keys of the units of ``units`` that ``out`` holds with a normal ending. Refuses a file whose
    episodes of those units were played with another version of the scenario or turn limit."""
    by_key = {u.key: u for u in units}
    changed: set[str] = set()
    limits: set[str] = set()
    done: set[UnitKey] = set()
    heads = list(read_heads(out, skip_torn=True))  # typed: a broken line is a located error
    if any(head.schema_version != TRAJECTORY_VERSION for _, head in heads):
        raise TrajgymError(f"{out} holds episodes of trajectory schema 1, written by an older trajgym: they are read "
                           "(upgraded) but a job does not append to them; choose another output file")
    for _, head in counting(heads):
        unit = by_key.get(head.key)
        if unit is None or head.infra:
            continue
        if head.scenario_hash != unit.template.content_hash:
            changed.add(head.key.scenario_id)
        if head.max_turns not in (None, unit.turn_limit):  # files before max_turns: None
            limits.add(f"{head.key.scenario_id} ({head.max_turns}, now {unit.turn_limit})")
        done.add(head.key)
    if changed:
        raise TrajgymError(f"{out} holds episodes of another version of scenario(s) "
                           f"{', '.join(sorted(changed))} (their content hash differs); "
                           "resume with the same scenario files, or choose another output file")
    if limits:
        raise TrajgymError(f"{out} holds episodes played under another turn limit: {', '.join(sorted(limits))}; "
                           "resume with the same --max-turns (job file: max_turns), or choose another output file")
    return done


def check_output(out: str | Path, *, resume: bool) -> bool:
    """Whether ``out`` holds anything; without ``resume`` that is an error (jobs never mix)."""
    p = Path(out)
    if p.is_dir():
        raise TrajgymError(f"output {p} is a folder; give a .jsonl file")
    if not p.exists() or p.stat().st_size == 0:
        return False
    if not resume:
        raise TrajgymError(f"output {p} already holds episodes; pass --resume to continue that job "
                           "(units already finished are skipped), or choose another output file")
    return True


def prepare_output(out: str | Path, units: list[WorkUnit], *, resume: bool) -> tuple[set[UnitKey], Path | None]:
    """Check ``out`` before a job appends to it: the keys already finished, and where a torn last
    line went. Without ``resume`` a non-empty file is an error."""
    p = Path(out)
    if not check_output(p, resume=resume):
        return set(), None
    torn = repair_torn_tail(p)
    return finished_units(p, units), torn


def todo(units: list[WorkUnit], out: str | Path, resume: bool) -> tuple[list[WorkUnit], int, Path | None]:
    """The units still to play (each key once), how many ``out`` holds already, and where a torn
    last line went."""
    seen: set[UnitKey] = set()
    unique = []
    for u in units:
        if u.key not in seen:
            seen.add(u.key)
            unique.append(u)
    done, torn = prepare_output(out, unique, resume=resume)
    left = [u for u in unique if u.key not in done]
    return left, len(unique) - len(left), torn
