"""Reading scored-trajectory files (``trajgym score`` output) for the report.

NOTE(merge): a reader of scored files may also come with ``trajgym score``; keep one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import ValidationError

from trajgym.errors import TrajectoryFileError
from trajgym.scorers.records import SCORED_VERSION, ScoredTrajectory


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field {where}: {err['msg']}{more}"


def iter_scored(path: str | Path) -> Iterator[ScoredTrajectory]:
    """Each record of a scored file (a missing ``source`` becomes ``file:line``); a broken line is an
    error located as ``file:line``."""
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
            except ValueError as exc:
                raise TrajectoryFileError(p, n, f"not JSON ({exc}); a torn last line? see `trajgym show`") from None
            if not isinstance(data, dict):
                raise TrajectoryFileError(p, n, "a line must be a JSON object")
            if "scored_version" not in data:
                hint = (f"this is a trajectory, not a scored one: score it first with `trajgym score {p} "
                        "--out SCORED.jsonl`" if "schema_version" in data else "no scored_version field")
                raise TrajectoryFileError(p, n, hint)
            if data["scored_version"] != SCORED_VERSION:
                raise TrajectoryFileError(p, n, f"scored_version {data['scored_version']!r} is not supported "
                                                f"(this trajgym reads {SCORED_VERSION})")
            try:
                record = ScoredTrajectory.model_validate(data)
            except ValidationError as exc:
                raise TrajectoryFileError(p, n, _first_error(exc)) from None
            if not record.source:
                record.source = f"{p}:{n}"
            yield record


def read_scored(paths: Sequence[str | Path]) -> list[ScoredTrajectory]:
    """The records of every file, in order."""
    return [record for path in paths for record in iter_scored(path)]
