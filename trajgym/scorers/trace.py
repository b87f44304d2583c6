"""What the rule-based scorers read off a trajectory.

The support agent's calls and messages, the goal in force (a customer may change their mind), the
facts told, and the world after every step: :func:`trace` re-runs the trajectory's applied tool
calls on a fresh copy of the world, with the domain's policy checker watching each call, so scorers
can test a state condition after any step and re-derive policy violations instead of trusting the
recorded ones. Nothing here changes the trajectory or the shared scenario instance.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from trajgym.faults.layer import ERROR_KINDS
from trajgym.scenario.schema import Checkpoint, Goal, GoalChange, RefAction, Scenario, ToolFault
from trajgym.scorers.base import ScoringContext
from trajgym.trajectory.schema import ToolCallRecord, Trajectory, ViolationRecord
from trajgym.world.conditions import evaluate
from trajgym.world.control import ENDINGS
from trajgym.world.tools import ToolResult, whole_result

log = logging.getLogger(__name__)

TOLERANCE = 0.005
"""Numbers closer than this are equal (cents), as in the env's goal conditions."""

FREE_TEXT = frozenset({"reason", "note", "summary", "text"})
"""Arguments that are prose: two calls that differ only in these are the same call."""

MALFORMED_CALL = frozenset({"invalid_arguments", "unknown_tool"})
"""Error types of calls that never reached the world."""

AFTER_STEP = 1_000_000
"""Sub-position of a state checked after a step: after every call of that step."""

Position = tuple[int, int]
"""Where an event happened: (turn, index of the call in its step); messages have index 0."""


@dataclass(frozen=True)
class CallRef:
    """One tool call of a trajectory, with the step it belongs to."""

    turn: int
    index: int
    role: str
    record: ToolCallRecord

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def args(self) -> dict[str, Any]:
        return self.record.arguments if isinstance(self.record.arguments, dict) else {}

    @property
    def position(self) -> Position:
        return (self.turn, self.index)

    @property
    def reached_world(self) -> bool:
        """The call was well-formed and allowed: it got to the tool (or to a fault in front of it)."""
        return self.record.error_type not in MALFORMED_CALL

    @property
    def clean(self) -> bool:
        """It succeeded and what came back is whole (not stale, partial or cut-off JSON)."""
        return whole_result(self.record.ok, self.record.content)

    def same_call(self, other: CallRef | tuple[str, dict[str, Any]]) -> bool:
        """Same tool with the same arguments, prose aside."""
        name, args = (other.name, other.args) if isinstance(other, CallRef) else other
        return self.name == name and identity(self.args) == identity(args)


def identity(args: dict[str, Any]) -> str:
    """The arguments that say what a call does (prose left out), as comparable text."""
    return json.dumps({k: v for k, v in args.items() if k not in FREE_TEXT}, sort_keys=True, default=str)


def calls(traj: Trajectory, role: str | None = "support") -> list[CallRef]:
    """Every tool call of ``role`` (every role with None), in order."""
    return [CallRef(step.turn, i, step.role, rec) for step in traj.steps if role is None or step.role == role
            for i, rec in enumerate(step.tool_calls)]


def messages(traj: Trajectory) -> list[tuple[int, str]]:
    """(turn, text) of every message the support agent sent the customer."""
    return [(step.turn, step.message) for step in traj.steps if step.role == "support" and step.message is not None]


def mentions(text: str, any_of: list[str]) -> bool:
    """Whether ``text`` contains one of ``any_of``, ignoring case (how the env checks facts told)."""
    lowered = text.lower()
    return any(s.lower() in lowered for s in any_of)


def numbers_equal(a: Any, b: Any) -> bool | None:
    """Whether two numbers are equal within :data:`TOLERANCE`; None unless both are numbers."""
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | float) or not isinstance(b, int | float):
        return None
    return abs(float(a) - float(b)) < TOLERANCE


def value_matches(matcher: Any, value: Any) -> bool:
    """Whether an argument ``value`` passes a checkpoint's matcher (see :class:`Checkpoint`)."""
    if not isinstance(matcher, dict):
        same = numbers_equal(matcher, value)
        return same if same is not None else matcher == value
    op, want = next(iter(matcher.items()))
    if op == "equals":
        return value_matches(want, value)
    if op == "in":
        return any(value_matches(w, value) for w in want)
    if op == "contains":
        return isinstance(value, str) and str(want).lower() in value.lower()
    if op == "regex":
        return isinstance(value, str) and re.search(str(want), value) is not None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    bound = float(want)
    return float(value) >= bound - TOLERANCE if op == "gte" else float(value) <= bound + TOLERANCE


def args_match(matchers: dict[str, Any], args: dict[str, Any]) -> bool:
    return all(key in args and value_matches(m, args[key]) for key, m in matchers.items())


LONG_TEXT = 80
"""Reference arguments longer than this (code, file contents) are not matched against an agent's."""


def call_matchers(action: RefAction) -> dict[str, Any]:
    """The arguments of a reference call that say what it does (no prose, no long text)."""
    return {k: v for k, v in action.args.items()
            if k not in FREE_TEXT and not (isinstance(v, str) and len(v) > LONG_TEXT)}


def reference_actions(spec: Scenario) -> Iterator[RefAction]:
    """Every action the scenario's references hold: fallbacks and goal changes' references too."""
    plans = [spec.reference] + [f.reference for f in spec.faults if isinstance(f, GoalChange)]
    while plans:
        for action in plans.pop():
            yield action
            if action.fallback:
                plans.append(action.fallback)


def in_reference(c: CallRef, spec: Scenario) -> bool:
    """Whether some reference action makes this call (its identifying arguments agree)."""
    return any(a.call == c.name and args_match(call_matchers(a), c.args) for a in reference_actions(spec))


def lasts_whole_episode(fault: ToolFault, max_turns: int) -> bool:
    """Whether ``fault`` fails its calls on every turn an agent could make them: no retry can pass."""
    failing = fault.kind in ERROR_KINDS or (fault.kind == "timeout" and not fault.applied)
    always = fault.nth_call is None and (fault.probability is None or fault.probability >= 1.0)
    window = fault.turns is None or (fault.turns[0] <= 1 and fault.turns[1] >= max_turns - 1)
    return failing and always and window


def blocked_for_good(spec: Scenario) -> bool:
    """Whether some tool fault of ``spec`` fails its calls for the whole episode."""
    return any(isinstance(f, ToolFault) and lasts_whole_episode(f, spec.limits.max_turns) for f in spec.faults)


# ---------------------------------------------------------------------------------------------
# the goal in force


@dataclass(frozen=True)
class GoalView:
    """The goal a trajectory is judged against: the scenario's, or a goal change's once it fired."""

    scenario: Scenario
    change: GoalChange | None
    change_index: int | None
    changed_at: int | None
    """The turn of the support message after which the customer changed their mind."""

    @property
    def goal(self) -> Goal:
        return self.change.goal if self.change is not None else self.scenario.goal

    def goal_at(self, turn: int) -> Goal:
        """The goal in force when the message of ``turn`` was sent."""
        if self.change is None or self.changed_at is None or turn <= self.changed_at:
            return self.scenario.goal
        return self.change.goal


def goal_view(traj: Trajectory, spec: Scenario) -> GoalView:
    """Which goal applies to ``traj``: a ``customer_goal_change`` record names the change that fired."""
    for record in traj.faults:
        if record.kind == "customer_goal_change":
            change = spec.faults[record.index]
            if not isinstance(change, GoalChange):
                raise ValueError(f"episode {traj.episode_id}: fault {record.index} of scenario {spec.id} is not a "
                                 "customer_goal_change; the scenario file changed since the episode was played")
            return GoalView(spec, change, record.index, record.turn)
    return GoalView(spec, None, None, None)


def facts_told(traj: Trajectory, view: GoalView) -> dict[str, int]:
    """Fact name -> the turn it was first told, matched as the env does: each support message
    against the facts of the goal in force when it was sent."""
    told: dict[str, int] = {}
    for turn, text in messages(traj):
        for fact in view.goal_at(turn).tell:
            if fact.name not in told and mentions(text, fact.any_of):
                told[fact.name] = turn
    return told


# ---------------------------------------------------------------------------------------------
# re-running the trajectory


@dataclass(frozen=True)
class Trace:
    """A trajectory re-run on a fresh copy of its world."""

    states: list[dict[str, Any]] | None
    """The world (as JSON data) after each step, aligned with ``traj.steps``; None where the
    domain's world lives outside its state model (``Domain.live_state`` false)."""
    violations: list[ViolationRecord]
    """Policy violations the domain's checker finds, each at the turn of the call that broke it."""
    rules: list[str]
    """The policy rules the checker checks with this scenario's parameters."""
    final_matches: bool | None
    """Whether the re-built final world equals the recorded ``final_state`` (None: not re-built)."""


def trace(ctx: ScoringContext, traj: Trajectory) -> Trace:
    """The :class:`Trace` of ``traj``, computed once while ``traj`` is the trajectory being scored."""
    slot = ctx.cache.get("rules.trace")
    if isinstance(slot, tuple) and slot[0] is traj:
        cached: Trace = slot[1]
        return cached
    result = _trace(ctx, traj)
    ctx.cache["rules.trace"] = (traj, result)  # holds traj, so its id cannot be reused meanwhile
    return result


def _trace(ctx: ScoringContext, traj: Trajectory) -> Trace:
    inst = ctx.instance(traj)
    domain = inst.domain
    live = domain.live_state
    state = inst.fresh_state()
    kit = domain.toolkit(state) if live else None
    checker = domain.checker(inst.policy_params)
    allowed: dict[str, set[str]] = {str(role): set(names) for role, names in inst.spec.tools.items()}
    violations: list[ViolationRecord] = []
    states: list[dict[str, Any]] = []
    current = state.model_dump(mode="json") if live else {}
    for step in traj.steps:
        changed = False
        for rec in step.tool_calls:
            if rec.name in ENDINGS or rec.name not in allowed.get(step.role, set()):
                continue
            args = domain.toolkit.validate(rec.name, rec.arguments)
            if isinstance(args, ToolResult):  # bad arguments: the call never reached the world
                continue
            violations += [ViolationRecord(turn=step.turn, role=step.role, tool=rec.name, rule=v.rule,
                                           message=v.message)
                           for v in checker.before_call(step.role, rec.name, args, state)]
            if kit is not None and rec.applied:
                kit.turn = step.turn
                again = kit.invoke(rec.name, args)
                changed = True
                if not again.ok:
                    log.warning("episode %s turn %d: %s applied in the episode but fails when re-run (%s); the "
                                "scenario or the world changed since", traj.episode_id, step.turn, rec.name,
                                again.content)
            seen = ToolResult(rec.ok, rec.content, rec.error_type, rec.applied)
            checker.after_call(step.role, rec.name, args, seen, state)
        if live:
            if changed:
                current = state.model_dump(mode="json")
            states.append(current)
    final_matches = None
    if kit is not None:
        kit.finalize()
        final_matches = state.model_dump(mode="json") == traj.final_state
        if not final_matches:
            log.warning("episode %s: re-running its tool calls does not rebuild its final state; state "
                        "checkpoints are judged on the re-built world", traj.episode_id)
    return Trace(states if live else None, violations, checker.rules(), final_matches)


# ---------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_positions(point: Checkpoint, traj: Trajectory, tr: Trace | None, *,
                         attempts: bool, since: int | None = None,
                         support: list[CallRef] | None = None) -> list[Position]:
    """Where ``point`` happens in ``traj``, in order. A ``call`` counts when support made it and it
    succeeded (any attempt that reached the world with ``attempts``); a ``state`` after each step
    where it holds (needs ``tr.states``); only events after turn ``since`` when given. ``support``:
    ``calls(traj)``, when the caller has it already."""
    after = -1 if since is None else since
    if point.call is not None:
        return [c.position for c in (calls(traj) if support is None else support)
                if c.turn > after and c.name == point.call
                and (c.reached_world if attempts else c.record.ok) and args_match(point.args, c.args)]
    if point.tell is not None:
        tell = point.tell
        return [(turn, 0) for turn, text in messages(traj) if turn > after and mentions(text, tell)]
    assert point.state is not None
    if tr is None or tr.states is None:
        raise ValueError(f"a state checkpoint needs the world after each step, which domain {traj.domain} does "
                         "not rebuild (the loader rejects such scenarios; the file changed since?)")
    cond = point.state
    holds: dict[int, bool] = {}  # id(state) -> whether cond holds; steps that change nothing share a state
    for state in tr.states:
        if id(state) not in holds:
            holds[id(state)] = evaluate(cond, state)[0]
    return [(step.turn, AFTER_STEP) for step, state in zip(traj.steps, tr.states, strict=True)
            if step.turn > after and holds[id(state)]]
