"""Scored records built by hand from real trajectories, for the report tests.

No scorer of trajgym runs here: each record's scores are read off the episode's own outcome, its
violations and its faults, so the report has the shapes it meets in real scored files (several
scorers, n/a scores, findings with turns, groups with ranks, an excluded infra-error episode).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from trajgym.rollout.runner import plan, run
from trajgym.scenario.catalog import builtin_scenarios
from trajgym.scenario.loader import load
from trajgym.scorers.base import Blame, Finding, ScoreResult
from trajgym.scorers.records import ScoredTrajectory, group_key
from trajgym.trajectory import Trajectory, read

SCENARIOS = ("refund_damaged_item", "refund_service_flaky", "large_refund_needs_approval", "order_system_outage",
             "timeout_refund_applied", "invoice_approval")


def rollouts(folder: Path, *, episodes: int = 2, trials: int = 2) -> list[Trajectory]:
    """Oracle and random episodes of :data:`SCENARIOS` (same variations for both agents)."""
    templates = [load(builtin_scenarios()[sid]) for sid in SCENARIOS]
    out: list[Trajectory] = []
    for agent in ("oracle", "random"):
        path = folder / f"{agent}.jsonl"
        run(plan(templates, episodes, seed=7, trials=trials), path, support=agent, fsync=False)
        out.extend(read(path))
    return out


def _scores(traj: Trajectory) -> dict[str, ScoreResult | None]:
    out = traj.outcome
    findings = [Finding(kind="goal", message=f"{c.path}: expected {c.expected!r}, got {c.actual!r}")
                for c in out.conditions if not c.ok]
    findings += [Finding(kind="fact", message=f"never told: {f.name}") for f in out.facts if not f.told]
    outcome = ScoreResult(score=1.0 if out.success else 0.0, passed=out.success, findings=findings)
    policy = ScoreResult(score=0.0 if out.violations else 1.0, passed=not out.violations,
                         findings=[Finding(kind="violation", message=f"[{v.rule}] {v.message}", turn=v.turn,
                                           blame="agent") for v in out.violations])
    support = [s for s in traj.steps if s.role == "support"]
    malformed = [s for s in support if s.error]
    efficiency = ScoreResult(score=1.0 - len(malformed) / len(support) if support else 1.0,
                             findings=[Finding(kind="malformed", message=s.error or "", turn=s.turn)
                                       for s in malformed], details={"turns": len(traj.steps)})
    recovery = (ScoreResult(score=1.0 if out.success else 0.0, passed=out.success) if traj.faults else None)
    return {"outcome": outcome, "policy": policy, "efficiency": efficiency, "recovery": recovery}


def _blame(traj: Trajectory) -> Blame | None:
    if traj.outcome.success:
        return None
    if traj.termination == "customer_requested_human" and not traj.faults:
        return "simulator"
    return "tool" if traj.faults and not any(s.error for s in traj.steps) else "agent"


def score_by_hand(trajectories: Sequence[Trajectory], *, excluded: int = 0) -> list[ScoredTrajectory]:
    """Scored records of ``trajectories``; the first ``excluded`` ones become infra-error episodes."""
    records = []
    for i, traj in enumerate(trajectories):
        if i < excluded:
            broken = traj.model_copy(update={"termination": "infra_error", "infra_error": "model server down"})
            records.append(ScoredTrajectory(trajectory=broken, source=f"hand:{i}", scores={}, total=None, success=None,
                                            blame=None, excluded="infra_error", group=group_key(broken)))
            continue
        scores = _scores(traj)
        applied = [r.score for r in scores.values() if r is not None]
        total = 0.0 if not traj.outcome.success else sum(applied) / len(applied)
        records.append(ScoredTrajectory(trajectory=traj, source=f"hand:{i}", scores=scores, total=total,
                                        success=traj.outcome.success, blame=_blame(traj), group=group_key(traj)))
    groups: dict[str, list[ScoredTrajectory]] = defaultdict(list)
    for r in records:
        if r.excluded is None:
            groups[r.group].append(r)
    for members in groups.values():
        for rank, r in enumerate(sorted(members, key=lambda r: -(r.total or 0.0)), 1):
            r.rank, r.group_size = rank, len(members)
    return records
