"""A filter chain's output: the kept records, and a sidecar of the dropped ones with the step and reason.

``trajgym filter SCORED.jsonl --config FILTERS.yaml --out KEPT.jsonl`` writes ``KEPT.jsonl``
(scored records, each stamped with the chain that kept it: :class:`~trajgym.trajectory.scored.FilterStamp`)
and ``KEPT.dropped.jsonl`` (one :class:`DroppedRecord` per episode the chain dropped). Both are
written whole or not at all, so the audit trail always matches the kept file beside it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trajgym.errors import TrajectoryFileError
from trajgym.trajectory.lines import REWRITE_HINT, bad_line, open_lines
from trajgym.trajectory.scored import FilterStamp, ScoredTrajectory


class DroppedRecord(BaseModel):
    """One episode a filter chain dropped: which, by which step, why."""

    model_config = ConfigDict(extra="forbid")

    episode_id: str
    scenario_id: str
    seed: int
    trial: int
    policy: str
    group: str
    source: str = Field(description="where the scored record was read: '<scored file>:<line>'")
    step: int = Field(description="the step that dropped it, 1-based, in the chain's order")
    step_name: str = Field(description="the step as configured, e.g. 'min_score 0.7'")
    reason: str
    duplicate_of: str | None = Field(default=None, description="for a duplicate: the episode id of the copy kept")
    filter_hash: str = Field(description="the hash of the chain (FilterStamp.hash of the kept records)")


def chain_stamp(steps: list[dict[str, Any]], file: str | Path | None = None) -> FilterStamp:
    """The stamp of a chain given as its steps (each a one-key mapping, as in a filter file)."""
    digest = hashlib.sha256(orjson.dumps(steps, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return FilterStamp(chain=steps, hash=digest, file=str(file) if file is not None else None)


def dropped_path(out: str | Path) -> Path:
    """The sidecar of a kept file: ``KEPT.jsonl`` -> ``KEPT.dropped.jsonl``."""
    p = Path(out)
    stem = p.name[:-len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(f"{stem}.dropped.jsonl")


def write_filter_output(out: str | Path, kept: Iterable[ScoredTrajectory], dropped: Iterable[DroppedRecord]) -> Path:
    """Write the kept records to ``out`` and the dropped ones to its sidecar, each whole (a temporary
    file moved into place, the sidecar first). Returns the sidecar's path."""
    dst = Path(out)
    side = dropped_path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    _atomic(side, (rec.model_dump_json() for rec in dropped))
    _atomic(dst, (rec.model_dump_json() for rec in kept))
    return side


def _atomic(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def iter_dropped(path: str | Path) -> Iterator[DroppedRecord]:
    """Read a dropped-episodes sidecar; a bad line is a located :class:`TrajectoryFileError`."""
    for n, raw, torn in open_lines(path, "dropped-episodes"):
        try:
            yield DroppedRecord.model_validate_json(raw)
        except ValidationError as exc:
            why = bad_line(raw, torn, "dropped-episode record", REWRITE_HINT)
            if not why:
                error = exc.errors(include_url=False)[0]
                why = f"not a dropped-episode record ({'.'.join(map(str, error['loc']))}: {error['msg']})"
            raise TrajectoryFileError(path, n, why) from None
