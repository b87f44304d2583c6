"""Scored rollouts for the report tests: real oracle and random episodes of a few shipped scenarios,
scored by trajgym's scoring pipeline (``trajgym.scorers.pipeline.score_files``).

The pipeline runs every default rule-based scorer that is registered, plus three small scorers
defined here that read the episode's own record (its outcome, its policy violations, its malformed
actions), so the report meets several scorers, n/a scores, findings with turns, ranks, blame, and
an excluded ``infra_error`` unit, whichever scorers exist yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from trajgym.report import read_scored
from trajgym.rollout.agentspec import AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import plan
from trajgym.scenario.catalog import resolve
from trajgym.scorers import SCORERS, Finding, Scorer, ScoreResult, ScoringContext, register
from trajgym.scorers.config import DEFAULT_SCORERS, ScoringConfig, build_scorers
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import ScoredTrajectory
from trajgym.world.loader import load

SCENARIOS = ("refund_damaged_item", "refund_service_flaky", "large_refund_needs_approval", "order_system_outage",
             "timeout_refund_applied", "invoice_approval")


class RecordedOutcome(Scorer):
    """Passed when the episode's recorded outcome succeeded; a finding per unmet goal or untold fact."""

    name: ClassVar[str] = "recorded_outcome"

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult:
        out = traj.outcome
        findings = [Finding(kind="goal", message=f"{c.path}: expected {c.expected!r}, got {c.actual!r}")
                    for c in out.conditions if not c.ok]
        findings += [Finding(kind="fact", message=f"never told: {f.name}") for f in out.facts if not f.told]
        return ScoreResult(score=1.0 if out.success else 0.0, passed=out.success, findings=findings)


class RecordedPolicy(Scorer):
    """0 with a finding per recorded policy violation, else 1."""

    name: ClassVar[str] = "recorded_policy"

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult:
        violations = traj.outcome.violations
        return ScoreResult(score=0.0 if violations else 1.0, passed=not violations,
                           findings=[Finding(kind="violation", message=f"[{v.rule}] {v.message}", turn=v.turn,
                                             blame="agent") for v in violations])


class MalformedActions(Scorer):
    """The share of support actions that could be read; a finding per malformed one, quoting it."""

    name: ClassVar[str] = "malformed_actions"

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        support = [s for s in traj.steps if s.role == "support"]
        if not support:
            return None
        bad = [s for s in support if s.error]
        return ScoreResult(score=1.0 - len(bad) / len(support),
                           findings=[Finding(kind="malformed", message=f"{s.action[:200]} ({s.error})", turn=s.turn)
                                     for s in bad])


for _cls in (RecordedOutcome, RecordedPolicy, MalformedActions):
    if _cls.name not in SCORERS:
        register(_cls)


def scoring() -> Scoring:
    """The registered default scorers and the three above; success from the real outcome scorer
    when it exists."""
    weights: dict[str, float] = {n: w for n, w in DEFAULT_SCORERS.items() if n in SCORERS}
    weights.update({RecordedOutcome.name: 2.0, RecordedPolicy.name: 1.0, MalformedActions.name: 0.5})
    config = ScoringConfig.model_validate({"scorers": weights, "success_from": "outcome" if "outcome" in weights
                                           else RecordedOutcome.name})
    return Scoring(config, build_scorers(config))


def _edit_first(path: Path, wanted: Callable[[dict[str, Any]], bool],
                change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite the first episode of a trajectory file that is ``wanted``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    n = next(i for i, line in enumerate(lines) if wanted(json.loads(line)))
    lines[n] = json.dumps(change(json.loads(lines[n])))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _infra_error(ep: dict[str, Any]) -> dict[str, Any]:
    return {**ep, "termination": "infra_error", "infra_error": "model server down (test)"}


def _poisonable(ep: dict[str, Any]) -> bool:
    steps = ep["steps"]
    return all(any(s[k] for s in steps) for k in ("message", "tool_calls", "error"))


def poison(text: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An edit that puts ``text`` in an episode's first message, tool result and malformed action."""
    def change(ep: dict[str, Any]) -> dict[str, Any]:
        steps = ep["steps"]
        next(s for s in steps if s["message"] is not None)["message"] = f"hello {text}"
        next(s for s in steps if s["tool_calls"])["tool_calls"][0]["content"] = {"note": text}
        next(s for s in steps if s["error"])["action"] = text
        return ep
    return change


def scored_rollouts(folder: Path, *, episodes: int, trials: int, hostile: str | None = None) -> list[ScoredTrajectory]:
    """Oracle and random support on :data:`SCENARIOS` (the same variations), scored into
    ``folder/scored.jsonl``. The oracle's first unit ends in ``infra_error``; with ``hostile``, a
    random agent's episode carries that text."""
    templates = [load(resolve(s)) for s in SCENARIOS]
    files = []
    for agent in ("oracle", "random"):
        path = folder / f"{agent}.jsonl"
        run_job(plan(templates, episodes=episodes, seed=7, trials=trials), path, AgentSpec.support(agent),
                fsync=False)
        files.append(path)
    _edit_first(files[0], lambda ep: True, _infra_error)
    if hostile is not None:
        _edit_first(files[1], _poisonable, poison(hostile))
    out = folder / "scored.jsonl"
    score_files(files, out, scoring())
    return read_scored([out])
