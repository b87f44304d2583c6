"""The scored-trajectory file: one JSON line per episode, the trajectory plus its scores.

``trajgym score IN.jsonl --out SCORED.jsonl`` writes these (the input is never touched); filters,
exports, the report and the trainers read them with :func:`iter_scored`. A filter chain's output
(``trajgym filter``) is the same kind of file, each kept record stamped with the chain that kept it
(:class:`FilterStamp`), beside a sidecar of the episodes it dropped and why
(:mod:`trajgym.trajectory.filtered`).

Version 2 embeds trajectory schema 2 and may carry a ``filter`` stamp; version 1 files are read,
their trajectories upgraded in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trajgym import jsonio
from trajgym.errors import TrajectoryFileError
from trajgym.trajectory.lines import REWRITE_HINT, bad_line, open_lines
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.units import group_key as variation_key
from trajgym.trajectory.v1 import upgrade

SCORED_VERSION: Literal[2] = 2

Blame = Literal["agent", "simulator", "tool", "infrastructure"]
"""Who caused a failure: the agent under training, the customer simulator (broke character, ended
early), a tool or injected fault (the task became impossible), or the infrastructure (model server)."""

BLAMES: tuple[Blame, ...] = ("agent", "simulator", "tool", "infrastructure")


class Finding(BaseModel):
    """One located observation of a scorer: a violation, a missed milestone, a useless call..."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="short machine-readable label, e.g. 'violation', 'minefield', 'repeat_call'")
    message: str
    turn: int | None = Field(default=None, description="the step (turn) it happened at, if it has one")
    blame: Blame | None = None


class ScoreResult(BaseModel):
    """What one scorer says about one trajectory. ``score`` is in [0, 1], higher is better."""

    model_config = ConfigDict(extra="forbid")

    score: float = Field(ge=0.0, le=1.0)
    passed: bool | None = Field(default=None, description="a binary verdict, for scorers that have one")
    veto: bool = Field(default=False, description="zero the combined score whatever the weights (minefields)")
    findings: list[Finding] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict, description="scorer-specific numbers and diffs")


class FilterStamp(BaseModel):
    """The filter chain that kept a record: its steps as configured, and their hash."""

    model_config = ConfigDict(extra="forbid")

    chain: list[dict[str, Any]] = Field(
        description="the chain's steps, in order, each with every setting in effect (defaults included)")
    hash: str = Field(description="sha256 (16 hex) of the chain's canonical JSON")
    file: str | None = Field(default=None, description="the filter file it came from, if any")


class ScoredTrajectory(BaseModel):
    """One scored episode."""

    model_config = ConfigDict(extra="forbid")

    scored_version: Literal[2] = SCORED_VERSION
    trajectory: Trajectory
    source: str = Field(default="", description="'<input file>:<line>' the trajectory was read from")
    scores: dict[str, ScoreResult | None] = Field(
        description="scorer name -> its result; None where the scorer does not apply to this episode")
    total: float | None = Field(description="weighted combination of the scores in [0, 1]; None when excluded")
    success: bool | None = Field(description="the outcome scorer's verdict; None when excluded or not scored")
    blame: Blame | None = Field(description="who caused the failure (infrastructure for an infra_error episode); None for a success")
    excluded: str | None = Field(default=None, description="why the episode is kept out of scoring (infra_error)")
    group: str = Field(description="the scenario variation, '<scenario_id>@<seed>': its trials and policies are ranked together")
    filter: FilterStamp | None = Field(default=None, description="the filter chain that kept it (trajgym filter output)")
    rank: int | None = Field(default=None, description="1 = best of its group; None when excluded")
    group_size: int = Field(default=1, description="scored (not excluded) episodes in the group")
    weights: dict[str, float] = Field(default_factory=dict, description="the weights the total was made with")
    scoring: dict[str, Any] = Field(default_factory=dict, description="scorer configs and the config file's hash")


def group_key(traj: Trajectory | dict[str, Any]) -> str:
    """The scenario variation of a trajectory: its trials (and the policies that played it) form a
    ranking group."""
    if isinstance(traj, Trajectory):
        return variation_key(traj.scenario_id, traj.seed)
    return variation_key(traj["scenario_id"], traj["seed"])


WHAT = "scored trajectory"


def parse_scored(path: str | Path, n: int, raw: bytes, torn: bool = False) -> ScoredTrajectory:
    """Line ``n`` of a scored file as a record (a version 1 record upgraded), or a located error."""
    try:
        return ScoredTrajectory.model_validate_json(raw)
    except ValidationError as exc:
        first = exc
    why = bad_line(raw, torn, WHAT, REWRITE_HINT)
    if why:
        raise TrajectoryFileError(path, n, why)
    data = jsonio.loads(raw)
    if data.get("scored_version") == 1 and isinstance(data.get("trajectory"), dict):
        try:
            trajectory = upgrade(data["trajectory"])
        except ValueError as exc:
            raise TrajectoryFileError(path, n, f"a version 1 {WHAT} with a broken schema 1 trajectory: {exc}") from None
        try:
            return ScoredTrajectory.model_validate({**data, "scored_version": SCORED_VERSION,
                                                    "trajectory": trajectory})
        except ValidationError as exc:
            first = exc
    if "scored_version" not in data and "schema_version" in data:
        raise TrajectoryFileError(path, n, "not a scored trajectory (a trajectory, not scored yet): score the file "
                                           "first with `trajgym score FILE --out SCORED.jsonl`")
    if "scored_version" not in data:
        raise TrajectoryFileError(path, n, f"not a {WHAT} (no scored_version): expected a line written by "
                                           "`trajgym score` or `trajgym filter`")
    version = data.get("scored_version")
    if version not in (1, SCORED_VERSION):
        raise TrajectoryFileError(path, n, f"scored_version {version!r} is not supported (this trajgym reads 1 and "
                                           f"{SCORED_VERSION})")
    raise TrajectoryFileError(path, n, f"not a {WHAT} ({_first_error(first)}); make one with `trajgym score`")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"


def iter_scored(path: str | Path) -> Iterator[ScoredTrajectory]:
    """Read a scored file, one validated :class:`ScoredTrajectory` per line; every bad line is a
    :class:`~trajgym.errors.TrajectoryFileError` naming the file and line."""
    for n, raw, torn in open_lines(path, WHAT):
        yield parse_scored(path, n, raw, torn)
