"""The outcome scorer: was the task done? Binary, with a structural diff against the reference.

Success means what the scenario's goal says, judged from the trajectory file alone: every goal
condition holds on the recorded final world, every required fact reached the customer (matched in
the support agent's messages as the env matches them), and the episode ended in an allowed way.
A customer who changed their mind moves the judgement to the new goal.

Policy violations and forbidden calls are *not* part of this verdict: the ``policy`` and
``minefields`` scorers judge the path, so a trajectory that reached the right world the wrong way
is an outcome success with a policy violation or a minefield veto. The env's own all-in-one verdict
is kept in ``details["env_success"]``.

The final world is also compared with the reference run's (:mod:`trajgym.scorers.reference`) on
the fields the goal names: a list of ``{path, expected, actual}`` in ``details["diff"]``, where
``expected`` is the reference's value. With ``strict=True`` a difference there fails the verdict too
(tau2-bench's rule); by default it is reported only, as goals may accept several worlds (``in``,
``gte``, ``exists``). The tool-use world is judged the same way: its goal names the check script's
result, recorded in the final state when the episode's sandbox closed.

Example::

    >>> from trajgym.scorers import ScoringContext, get_scorer
    >>> from trajgym.scorers.examples import played
    >>> result = get_scorer("outcome")().score(played("refund_damaged_item"), ScoringContext())
    >>> result.passed, result.details["diff"]
    (True, [])
"""

from __future__ import annotations

from typing import Any

from trajgym.scenario.schema import Condition
from trajgym.scorers.base import Blame, Finding, Scorer, ScoreResult, ScoringContext, register
from trajgym.scorers.reference import reference_run
from trajgym.scorers.trace import blocked_for_good, facts_told, goal_view, numbers_equal
from trajgym.trajectory.schema import Trajectory
from trajgym.world.conditions import MISSING, evaluate, resolve

ABSENT = "<absent>"
"""How the diff shows a field one side does not have."""


def structural_diff(expected: Any, actual: Any, path: str) -> list[dict[str, Any]]:
    """Where ``actual`` differs from ``expected``, leaf by leaf: ``[{path, expected, actual}]``.
    Numbers are equal within a cent; a field missing on one side shows as ``<absent>``."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[dict[str, Any]] = []
        for key in sorted(set(expected) | set(actual), key=str):
            out += structural_diff(expected.get(key, MISSING), actual.get(key, MISSING), f"{path}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True))
                for d in structural_diff(e, a, f"{path}.{i}")]
    same = numbers_equal(expected, actual)
    if same is None:  # not two numbers: equal values of one kind (True is not 1 here)
        same = isinstance(expected, bool) == isinstance(actual, bool) and expected == actual
    if same:
        return []
    return [{"path": path, "expected": ABSENT if expected is MISSING else expected,
             "actual": ABSENT if actual is MISSING else actual}]


def compared(cond: Condition, state: dict[str, Any]) -> Any:
    """What of ``state`` a goal condition is about: the size for ``count``, presence for
    ``exists``, else the value at its path (the whole subtree for a mapping)."""
    value = resolve(state, cond.path)
    if cond.operator == "count":
        return len(value) if isinstance(value, list | dict) else MISSING
    if cond.operator == "exists":
        return value is not MISSING
    return value


def left_before_support_acted(traj: Trajectory) -> bool:
    """The customer ended the chat before the support agent had a single turn: nothing the agent
    did (or failed to do) decided this episode."""
    return traj.termination in ("customer_ended", "customer_requested_human") and not any(
        s.role == "support" for s in traj.steps)


@register
class OutcomeScorer(Scorer):
    """1.0 and ``passed`` when the goal state, the facts told and the ending are all right, else 0.0.

    Findings name each unmet condition, fact and ending, with the turn where one applies. Blame is
    ``simulator`` for everything when the customer left before the agent had a turn; ``tool`` for
    a condition that a tool down for the whole episode keeps the reference run from meeting too;
    ``infrastructure`` for an episode cut by an infrastructure error; else ``agent``.
    """

    name = "outcome"
    forkable = True

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult:
        if traj.termination == "infra_error":
            return ScoreResult(score=0.0, passed=False, findings=[Finding(
                kind="infra_error", message=f"the episode was cut by an infrastructure error: {traj.infra_error}",
                blame="infrastructure")], details={"termination": traj.termination})
        spec = ctx.instance(traj).spec
        view = goal_view(traj, spec)
        goal = view.goal
        ref = reference_run(ctx, traj)
        last_turn = traj.steps[-1].turn if traj.steps else None
        early: Blame | None = "simulator" if left_before_support_acted(traj) else None
        blocked = blocked_for_good(spec)
        findings: list[Finding] = []
        conditions, diff = [], []
        # the reference run judged the same goal already, unless its goal change fired differently
        same_goal = ref.goal_changed == (view.change is not None) and len(ref.conditions) == len(goal.state)
        for i, cond in enumerate(goal.state):
            ok, actual = evaluate(cond, traj.final_state)
            ref_ok = bool(ref.conditions[i]["ok"]) if same_goal else evaluate(cond, ref.final_state)[0]
            expected = getattr(cond, cond.operator)
            conditions.append({"path": cond.path, "operator": cond.operator, "expected": expected,
                               "actual": actual, "ok": ok, "reference_ok": ref_ok})
            if not ok:
                impossible = not ref_ok and blocked
                findings.append(Finding(kind="condition", turn=last_turn, blame=early or ("tool" if impossible else "agent"),
                                        message=f"{cond.path} should be {cond.operator} {expected!r}, is {actual!r}"
                                        + (" (a tool that is down for the whole episode keeps the reference run from "
                                           "it too)" if impossible else "")))
            if ref_ok:
                diff += structural_diff(compared(cond, ref.final_state), compared(cond, traj.final_state), cond.path)
        told = facts_told(traj, view)
        facts = [{"name": f.name, "told": f.name in told, "turn": told.get(f.name)} for f in goal.tell]
        findings += [Finding(kind="fact", blame=early or "agent", message=f"the customer was never told the {f['name']}")
                     for f in facts if not f["told"]]
        end_ok = traj.termination in goal.end
        if not end_ok:
            findings.append(Finding(kind="ending", turn=last_turn, blame=early or "agent",
                                    message=f"the episode ended {traj.termination}; allowed: {', '.join(goal.end)}"))
        passed = all(c["ok"] for c in conditions) and all(f["told"] for f in facts) and end_ok
        if self.strict and diff:
            passed = False
            findings += [Finding(kind="state_diff", blame="agent", turn=last_turn,
                                 message=f"{d['path']}: the reference has {d['expected']!r}, this has {d['actual']!r}")
                         for d in diff]
        details = {
            "conditions": conditions, "facts": facts, "end_ok": end_ok, "termination": traj.termination,
            "allowed_endings": list(goal.end), "diff": diff, "goal_changed_at": view.changed_at,
            "env_success": traj.outcome.success,
            "reference": {"success": ref.success, "support_actions": ref.support_actions,
                          "termination": ref.termination, "goal_changed": ref.goal_changed},
        }
        return ScoreResult(score=1.0 if passed else 0.0, passed=passed, findings=findings, details=details)
