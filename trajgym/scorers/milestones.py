"""Milestones (ordered checkpoints, partial credit) and minefields (never, or the score is vetoed).

Both are declared in the scenario (``milestones:``, ``minefields:``; see
:class:`trajgym.scenario.schema.Checkpoint`). A milestone is passed by a support call that
succeeded, a message to the customer, or a world state after a step; the score is the largest
number of milestones the trajectory passes *in the listed order* (each at a later point than the
one before), over the number listed. A step back and a correct redo still earns the milestones
passed in order; an intermediate wrong step costs nothing by itself (the ``policy`` and
``efficiency`` scorers see it).

A minefield is hit by any attempt of a call (even one that failed: trying is the fault), a message,
or a world state after any step. The scenario's ``forbidden`` calls are minefields too. One hit
scores 0 with ``veto=True``, which zeroes the combined score whatever the weights.

When the customer changed their mind, the goal change's ``milestones`` (if it declares any)
replace the scenario's, and its ``minefields`` count from the change on.

Example::

    >>> from trajgym.scorers import ScoringContext, get_scorer
    >>> from trajgym.scorers.examples import played
    >>> traj = played("refund_damaged_item")
    >>> ctx = ScoringContext()
    >>> get_scorer("milestones")().score(traj, ctx).score
    1.0
    >>> result = get_scorer("minefields")().score(traj, ctx)
    >>> result.score, result.veto
    (1.0, False)
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from trajgym.scenario.schema import Checkpoint, GoalChange, Minefield
from trajgym.scorers.base import Finding, Scorer, ScoreResult, ScoringContext, register
from trajgym.scorers.trace import Position, Trace, calls, checkpoint_positions, goal_view, trace
from trajgym.trajectory.schema import Trajectory


def ordered_chain(positions: list[list[Position]]) -> list[tuple[int, Position]]:
    """The longest chain of (milestone index, position) with both strictly increasing, picking
    each milestone at most once at one of its ``positions`` (each list sorted). Ties go to the
    chain that ends earliest, which leaves the most room for the milestones after it."""
    best: list[tuple[Position, int, int]] = []  # chain length k+1 -> (end position, milestone, link to k)
    links: list[tuple[int, Position, int]] = []  # node -> (milestone, position, previous node or -1)
    for m, places in enumerate(positions):
        updates: list[tuple[int, Position, int]] = []
        for k in range(len(best), -1, -1):
            after = best[k - 1][0] if k > 0 else (-1, -1)
            i = bisect.bisect_right(places, after)
            if i == len(places):
                continue
            prev = best[k - 1][2] if k > 0 else -1
            if k == len(best) or places[i] < best[k][0]:
                updates.append((k, places[i], prev))
        for k, pos, prev in updates:
            links.append((m, pos, prev))
            end = (pos, m, len(links) - 1)
            if k == len(best):
                best.append(end)
            else:
                best[k] = end
    chain: list[tuple[int, Position]] = []
    node = best[-1][2] if best else -1
    while node >= 0:
        m, pos, node = links[node]
        chain.append((m, pos))
    return chain[::-1]


def _state_trace(ctx: ScoringContext, traj: Trajectory, points: Sequence[Checkpoint]) -> Trace | None:
    return trace(ctx, traj) if any(p.state is not None for p in points) else None


@register
class MilestonesScorer(Scorer):
    """Fraction of the scenario's milestones passed in order; None when it declares none."""

    name = "milestones"
    forkable = True

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        declared = ctx.template(traj).spec  # cheap: no variables drawn for a scenario without milestones
        if not declared.milestones and not any(isinstance(f, GoalChange) and f.milestones for f in declared.faults):
            return None
        spec = ctx.instance(traj).spec
        view = goal_view(traj, spec)
        points = list(spec.milestones)
        if view.change is not None and view.change.milestones is not None:
            points = list(view.change.milestones)
        if not points:
            return None
        tr = _state_trace(ctx, traj, points)
        support = calls(traj)
        positions = [checkpoint_positions(p, traj, tr, attempts=False, support=support) for p in points]
        chain = ordered_chain(positions)
        passed_at = dict(chain)
        findings = []
        for m, point in enumerate(points):
            if m in passed_at:
                continue
            where = (f"passed at turn {positions[m][0][0]}, but out of order" if positions[m]
                     else "never passed")
            findings.append(Finding(kind="milestone_missed", blame="agent",
                                    message=f"milestone {m + 1} ({point.label()}) {where}"))
        details = {
            "milestones": [{"name": p.label(), "passed": m in passed_at,
                            "turn": passed_at[m][0] if m in passed_at else None,
                            "seen_at": sorted({turn for turn, _ in positions[m]})} for m, p in enumerate(points)],
            "matched": len(chain), "total": len(points), "goal_changed_at": view.changed_at,
        }
        fraction = len(chain) / len(points)
        return ScoreResult(score=fraction, passed=len(chain) == len(points), findings=findings, details=details)


@register
class MinefieldsScorer(Scorer):
    """0 with a veto when any minefield (or forbidden call) is hit, else 1; None when the scenario
    declares neither. ``include_forbidden=False`` leaves the ``forbidden`` list out."""

    name = "minefields"
    forkable = True

    def __init__(self, include_forbidden: bool = True) -> None:
        self.include_forbidden = include_forbidden

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        declared = ctx.template(traj).spec
        if not (declared.minefields or (self.include_forbidden and declared.forbidden)
                or any(isinstance(f, GoalChange) and f.minefields for f in declared.faults)):
            return None
        spec = ctx.instance(traj).spec
        view = goal_view(traj, spec)
        mines: list[tuple[Minefield, int | None]] = [(m, None) for m in spec.minefields]
        if self.include_forbidden:
            mines += [(Minefield(name=f"forbidden {f.tool}", call=f.tool, args=f.args, reason=f.reason), None)
                      for f in spec.forbidden]
        if view.change is not None:
            mines += [(m, view.changed_at) for m in view.change.minefields]
        if not mines:
            return None
        tr = _state_trace(ctx, traj, [m for m, _ in mines])
        findings = []
        hits = []
        support = calls(traj)
        for mine, since in mines:
            for turn, _sub in checkpoint_positions(mine, traj, tr, attempts=True, since=since, support=support):
                why = f": {mine.reason}" if mine.reason else ""
                findings.append(Finding(kind="minefield", turn=turn, blame="agent",
                                        message=f"hit minefield {mine.label()}{why}"))
                hits.append({"name": mine.label(), "turn": turn})
                if mine.state is not None:
                    break  # a state that holds stays hit: report where it began
        return ScoreResult(score=0.0 if hits else 1.0, passed=not hits, veto=bool(hits), findings=findings,
                           details={"hits": hits, "minefields": [m.label() for m, _ in mines]})
