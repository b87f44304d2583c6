"""The recovery scorer: for each injected fault that fired, did the agent respond as it should?

Only faults that fired count (``traj.faults``), so an episode that succeeded because a probabilistic
fault never fired scores None here, while one where the fault fired and the agent got past it earns
the credit. Faults that hit another role's call (the supervisor's) are not the agent's to handle.

A fault's acceptable responses come from its ``recover:`` list in the scenario, or by default from
its kind (:data:`DEFAULT_RECOVERY`). Each response is recognised in what support did after the
faulted call:

- ``retry``: the same call (same tool and arguments, prose aside) later came back whole;
- ``wait``: that retry came after the agent paused, doing something else (a message, another
  tool) in between rather than calling the failing tool back to back (a rate limit's window
  refuses every call until ``retry_after`` turns have passed);
- ``verify``: a whole read of the truth (the same read again; for a write, its ``verify`` read such as
  ``get_order``) before the agent's next write, so it did not act on stale, partial or cut-off data
  or repeat a write that may have applied;
- ``escalate``: ``transfer_to_human``, ``create_ticket`` or ``escalate_ticket``; with the default
  list only once the fault persisted (it also failed a retry, or lasts the whole episode);
- ``tell_customer``: a message to the customer that says something went wrong;
- ``use_fallback``: a successful call of the plan the reference gives as ``fallback`` for the faulted
  call (never recognised for a call without one: other workarounds cannot be told from luck).

A fault is credited 1 when one acceptable response happened and nothing harmful did (repeating a
write whose timeout applied), else 0. For a ``customer_goal_change`` the response is following the
change: every write of the new reference made after it, and no write of the abandoned plan. Each
distinct call a fault hit is credited on its own (a fault on every tool can hit several); the score
is the mean credit; ``passed`` when all are credited.

A fault that lasts the whole episode (no ``nth_call``, no probability, a ``turns`` window covering
every turn) makes its call impossible. When it makes the task impossible too (the reference run,
under the same faults, misses its goal), its ``impossible`` finding carries blame ``tool``; when the
scenario's goal allows for it (hand the case over, undo the steps), a ``permanent_fault`` finding
without blame only notes it.

Example::

    >>> from trajgym.scorers import ScoringContext, get_scorer
    >>> from trajgym.scorers.examples import played
    >>> traj = played("refund_service_flaky")
    >>> result = get_scorer("recovery")().score(traj, ScoringContext())
    >>> result.score, result.details["faults"][0]["observed"]
    (1.0, {'retry': 10})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trajgym.faults.layer import ERROR_KINDS
from trajgym.scenario.schema import GoalChange, Recovery, RefAction, Scenario, ToolFault
from trajgym.scorers.base import Finding, Scorer, ScoreResult, ScoringContext, register
from trajgym.scorers.reference import reference_run
from trajgym.scorers.trace import (
    CallRef,
    args_match,
    call_matchers,
    calls,
    identity,
    lasts_whole_episode,
    mentions,
    messages,
    reference_actions,
)
from trajgym.trajectory.schema import Trajectory
from trajgym.world.control import ENDINGS, ControlTools
from trajgym.world.tools import ToolSpec

DEFAULT_RECOVERY: dict[str, tuple[Recovery, ...]] = {
    **dict.fromkeys(ERROR_KINDS, ("retry", "use_fallback", "escalate")),
    "timeout": ("verify", "retry"),
    "rate_limit": ("wait",),
    "stale_read": ("verify",),
    "partial": ("verify",),
    "malformed": ("verify",),
    "latency": (),  # the call succeeded: nothing to recover from
}
"""Acceptable responses by fault kind, for a fault without ``recover:``."""

ESCALATIONS = frozenset({"transfer_to_human", "create_ticket", "escalate_ticket"})
TROUBLE_WORDS = ("sorry", "problem", "issue", "error", "down", "unavailable", "failing", "failed", "trouble",
                 "bear with", "moment", "delay", "not working", "can't", "cannot", "couldn't", "unable",
                 "outage", "try again")


def _fallback_of(spec: Scenario, call: CallRef) -> list[RefAction] | None:
    """The fallback plan the reference gives for ``call``, if any (goal changes' references too)."""
    return next((a.fallback for a in reference_actions(spec)
                 if a.fallback and a.call == call.name and args_match(call_matchers(a), call.args)), None)


def _incidents(index: int, support: list[CallRef]) -> list[list[CallRef]]:
    """The support calls fault ``index`` hit, one list per distinct call (tool and arguments, prose
    aside): a fault on several tools, or on one tool with several arguments, is several incidents."""
    groups: dict[str, list[CallRef]] = {}
    for c in support:
        if any(f.index == index for f in c.record.faults):
            groups.setdefault(c.name + identity(c.args), []).append(c)
    return list(groups.values())


@dataclass
class _Incident:
    """A scenario fault that fired on one of support's calls (every attempt of that call it hit)."""

    index: int
    fault: ToolFault
    attempts: list[CallRef]
    later: list[CallRef]
    """Every support call after the first faulted one."""

    @property
    def first(self) -> CallRef:
        return self.attempts[0]

    def hit(self, c: CallRef) -> bool:
        return any(f.index == self.index for f in c.record.faults)


class _Responses:
    """Recognises each response to one incident (the turn it happened at, or None)."""

    def __init__(self, inc: _Incident, traj: Trajectory, spec: Scenario, specs: dict[str, ToolSpec],
                 permanent: bool) -> None:
        self.inc, self.traj, self.spec, self.specs, self.permanent = inc, traj, spec, specs, permanent

    def is_write(self, name: str) -> bool:
        known = self.specs.get(name)
        return known is not None and known.kind == "write"

    def _passed(self) -> CallRef | None:
        """The first later call that repeated the faulted one and came back whole."""
        inc = self.inc
        return next((c for c in inc.later if c.same_call(inc.first) and c.clean and not inc.hit(c)), None)

    def retry(self) -> int | None:
        passed = self._passed()
        return passed.turn if passed else None

    def wait(self) -> int | None:
        inc = self.inc
        passed = self._passed()
        if passed is None:
            return None
        paused = any(inc.first.turn < turn < passed.turn for turn in self._other_actions())
        return passed.turn if paused else None

    def _other_actions(self) -> list[int]:
        """Turns of support's messages and of its calls to other tools than the faulted one."""
        first = self.inc.first
        return [turn for turn, _ in messages(self.traj)] + [c.turn for c in self.inc.later if c.name != first.name]

    def verify(self) -> int | None:
        first = self.inc.first
        target = self.specs[first.name].verify if self.is_write(first.name) else first.name
        for c in self.inc.later:
            # the same read again, or the write's verify read of the same thing (shared arguments agree)
            same = c.same_call(first) if target == first.name else all(
                c.args[k] == v for k, v in first.args.items() if k in c.args)
            if c.name == target and c.clean and same:
                return c.turn
            if c.reached_world and (self.is_write(c.name) or c.name in ENDINGS):
                return None  # acted (or repeated the write) before checking
        return None

    def escalate(self, persisted_only: bool) -> int | None:
        if persisted_only and not (self.permanent or len(self.inc.attempts) > 1):
            return None
        return next((c.turn for c in self.inc.later if c.name in ESCALATIONS and c.record.ok), None)

    def tell_customer(self) -> int | None:
        return next((turn for turn, text in messages(self.traj)
                     if turn > self.inc.first.turn and mentions(text, list(TROUBLE_WORDS))), None)

    def use_fallback(self) -> int | None:
        plan = _fallback_of(self.spec, self.inc.first)
        if plan is None:
            return None
        return next((c.turn for c in self.inc.later if c.record.ok and c.name not in ESCALATIONS | ENDINGS.keys()
                     and any(a.call == c.name and args_match(call_matchers(a), c.args) for a in plan)), None)

    def detect(self, response: Recovery, *, declared: bool) -> int | None:
        """The turn ``response`` happened at; ``declared``: the scenario listed it itself."""
        detectors: dict[Recovery, Callable[[], int | None]] = {
            "retry": self.retry, "wait": self.wait, "verify": self.verify,
            "escalate": lambda: self.escalate(persisted_only=not declared),
            "tell_customer": self.tell_customer, "use_fallback": self.use_fallback,
        }
        return detectors[response]()

    def harm(self) -> int | None:
        """A write the timeout had already applied, made again."""
        first = self.inc.first
        if self.inc.fault.kind != "timeout" or not first.record.applied:
            return None
        return next((c.turn for c in self.inc.later if c.same_call(first) and c.record.ok), None)


def _goal_change(index: int, change: GoalChange, at: int, traj: Trajectory, *, spec: Scenario,
                 specs: dict[str, ToolSpec]) -> dict[str, Any]:
    """Whether support followed a change of mind: the new plan's writes made, the old plan's not."""

    def writes(plan: list[RefAction]) -> list[RefAction]:
        return [a for a in plan if a.call is not None and a.call in specs and specs[a.call].kind == "write"]

    def done(action: RefAction, c: CallRef) -> bool:
        return c.record.ok and c.name == action.call and args_match(call_matchers(action), c.args)

    later = [c for c in calls(traj) if c.turn > at]
    new = writes(change.reference)
    old = [a for a in writes(spec.reference) if not any(a.call == b.call and call_matchers(a) == call_matchers(b) for b in new)]
    made = [next((c.turn for c in later if done(a, c)), None) for a in new]
    harm = next((c.turn for c in later for a in old if done(a, c)), None)
    followed = all(t is not None for t in made)
    return {"index": index, "kind": "customer_goal_change", "tool": None, "turn": at, "attempts": 1,
            "acceptable": ["follow_change"],
            "observed": {"follow_change": max((t for t in made if t is not None), default=at)} if followed else {},
            "harm": harm, "permanent": False, "credit": 1.0 if followed and harm is None else 0.0}


def _permanent(index: int, fault: ToolFault, first: CallRef, *, possible: bool) -> Finding:
    """A fault that fails a call for the whole episode: the tool's doing when it made the task
    impossible (the reference run fails too), a fact the scenario allows for otherwise."""
    what = f"fault {index} ({fault.kind} on {first.name}) lasts the whole episode: that call can never succeed"
    if possible:
        return Finding(kind="permanent_fault", turn=first.turn, message=f"{what}; the scenario's goal allows for it")
    return Finding(kind="impossible", turn=first.turn, blame="tool",
                   message=f"{what}, and the task with it: the reference run fails too")


@register
class RecoveryScorer(Scorer):
    """Mean credit over the faults that fired; None when none did (or only latency)."""

    name = "recovery"
    forkable = True

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        if not traj.faults:
            return None
        inst = ctx.instance(traj)
        spec = inst.spec
        specs = {**inst.domain.toolkit.specs(), **ControlTools.specs()}
        support = calls(traj)
        results: list[dict[str, Any]] = []
        findings: list[Finding] = []
        for index, fault in enumerate(spec.faults):
            if isinstance(fault, GoalChange):
                fired = next((f for f in traj.faults if f.index == index and f.kind == "customer_goal_change"), None)
                if fired is not None:
                    results.append(_goal_change(index, fault, fired.turn, traj, spec=spec, specs=specs))
                continue
            acceptable = tuple(fault.recover) if fault.recover is not None else DEFAULT_RECOVERY[fault.kind]
            if not acceptable:
                continue
            permanent = lasts_whole_episode(fault, spec.limits.max_turns)
            for attempts in _incidents(index, support):
                inc = _Incident(index, fault, attempts, [c for c in support if c.position > attempts[0].position])
                seen = _Responses(inc, traj, spec, specs, permanent)
                observed = {r: t for r in acceptable
                            if (t := seen.detect(r, declared=fault.recover is not None)) is not None}
                harm = seen.harm()
                results.append({"index": index, "kind": fault.kind, "tool": inc.first.name, "turn": inc.first.turn,
                                "arguments": inc.first.args, "attempts": len(attempts), "acceptable": list(acceptable),
                                "observed": observed, "harm": harm, "permanent": permanent,
                                "credit": 1.0 if observed and harm is None else 0.0})
                if permanent:
                    findings.append(_permanent(index, fault, inc.first, possible=reference_run(ctx, traj).success))
        if not results:
            return None
        for r in results:
            what = f"fault {r['index']} ({r['kind']}{' on ' + r['tool'] if r['tool'] else ''}, turn {r['turn']})"
            if r["harm"] is not None:
                findings.append(Finding(kind="harmful_response", turn=r["harm"], blame="agent",
                                        message=f"{what}: the write had applied, and it was made again"))
            if not r["observed"]:
                findings.append(Finding(kind="not_recovered", turn=r["turn"], blame="agent",
                                        message=f"{what}: none of {', '.join(r['acceptable'])} followed"))
        credit = sum(r["credit"] for r in results) / len(results)
        return ScoreResult(score=credit, passed=all(r["credit"] == 1.0 for r in results), findings=findings,
                           details={"faults": results})
