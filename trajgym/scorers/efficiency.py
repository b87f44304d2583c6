"""The efficiency scorer: how much the support agent did, against what the reference needed.

The score is ``min(1, reference actions / support actions) * (1 - wasted actions / support actions)``:
the reference run of the same variation (:mod:`trajgym.scorers.reference`, its retries after faults
included) against the support agent's turns, discounted by the share of those turns that were
wasted (an agent that gave up early is not efficient for having done little). ``details`` carries
the raw counts, and each wasted action is a finding at its turn:

- ``repeat_call``: a call identical to an earlier one that came back whole, with no write in
  between that could change its answer;
- ``unused_read``: a read the reference does not make, that does not check an earlier write, and
  that came back whole and non-empty, none of whose values (ids, amounts, words of a file) the agent
  used afterwards in a call or a message, other than those it already passed to the read;
- ``after_goal``: a call after the goal was met (the goal's conditions held on the world after a
  step and its facts had been told); ending the conversation does not count. Needs the world after
  each step, so not counted in domains whose world lives in a sandbox;
- ``malformed_action``: an action that was not a valid message, or a call with an unknown tool or
  bad arguments.

Tokens are summed from the steps' ``generation`` records when the agent was a model (``usage``, else
the length of ``token_ids``). None for an episode cut by an infrastructure error, or one where
support never acted.

Example::

    >>> from trajgym.scorers import ScoringContext, get_scorer
    >>> from trajgym.scorers.examples import played
    >>> traj = played("refund_damaged_item")
    >>> result = get_scorer("efficiency")().score(traj, ScoringContext())
    >>> result.score, result.details["support_turns"], result.details["reference_actions"]
    (1.0, 6, 6)
"""

from __future__ import annotations

import bisect
import json
import re
from collections import Counter
from typing import Any

from trajgym.scenario.schema import Scenario
from trajgym.scorers.base import Finding, Scorer, ScoreResult, ScoringContext, register
from trajgym.scorers.reference import reference_run
from trajgym.scorers.trace import (
    MALFORMED_CALL,
    CallRef,
    GoalView,
    calls,
    facts_told,
    goal_view,
    in_reference,
    trace,
)
from trajgym.trajectory.schema import Trajectory
from trajgym.world.conditions import evaluate
from trajgym.world.control import ENDINGS
from trajgym.world.tools import ToolSpec

WORD = re.compile(r"[A-Za-z0-9_.@-]{4,}")
MAX_TEXT_WORDS = 400


def _values(content: Any) -> set[str]:
    """What a read returned that an agent could use later: scalars, and the words of a text."""
    out: set[str] = set()
    if isinstance(content, dict):
        for v in content.values():
            out |= _values(v)
    elif isinstance(content, list):
        for v in content:
            out |= _values(v)
    elif isinstance(content, str):
        words = WORD.findall(content) if len(content) > 40 else [content]
        out |= {w.lower() for w in words[:MAX_TEXT_WORDS] if len(w) >= 3}
    elif isinstance(content, int | float) and not isinstance(content, bool):
        out |= {str(content), f"{content:.2f}"}
    return out


def _key(c: CallRef) -> str:
    return c.name + json.dumps(c.record.arguments, sort_keys=True, default=str)


def _repeats(traj: Trajectory) -> list[CallRef]:
    """Support calls identical to an earlier whole one, with no write in between that could have
    changed its answer (or, for a write, made it right to do again)."""
    everyone = calls(traj, role=None)
    twice = {name for name, n in Counter(c.name for c in everyone).items() if n > 1}  # only these can repeat
    out = []
    writes = 0
    seen: dict[str, int] = {}  # call -> the number of writes made when it last came back whole
    for c in everyone:
        key = _key(c) if c.name in twice else None
        if key is not None and c.role == "support" and seen.get(key) == writes:
            out.append(c)
        if c.record.applied:
            writes += 1
        if key is not None and c.clean:
            seen[key] = writes
    return out


def _unused_reads(traj: Trajectory, support: list[CallRef], spec: Scenario,
                  specs: dict[str, ToolSpec]) -> list[CallRef]:
    """Support's whole, non-empty reads that the reference does not make either, that do not check
    an earlier write, and none of whose values the agent used afterwards (for a text, such as a
    file, naming what it read counts as using it)."""
    actions: list[tuple[tuple[int, int], str]] = []  # what support did, as text: made for the first read to judge
    checks = set()
    out = []
    for c in support:
        spec_c = specs.get(c.name)
        if spec_c is not None and spec_c.verify is not None:
            checks.add(spec_c.verify)
        if (spec_c is None or spec_c.kind != "read" or not c.clean or not c.record.content or c.name in checks
                or in_reference(c, spec)):
            continue
        if not actions:
            actions = [(a.position, json.dumps(a.record.arguments, default=str).lower()) for a in support]
            actions += [((s.turn, 0), s.message.lower()) for s in traj.steps if s.role == "support" and s.message]
            actions.sort(key=lambda a: a[0])
        known = json.dumps(c.record.arguments, default=str).lower()
        values = {v for v in _values(c.record.content) if v not in known}
        if isinstance(c.record.content, str):
            values |= {str(v).lower() for v in c.args.values()}
        later = " ".join(text for pos, text in actions[bisect.bisect_right(actions, (c.position, "\uffff")):])
        if values and not any(v in later for v in values):
            out.append(c)
    return out


def _goal_met_turn(ctx: ScoringContext, traj: Trajectory, view: GoalView) -> int | None:
    """The turn after which the goal in force was met, or None (never, or not knowable)."""
    tr = trace(ctx, traj)
    if tr.states is None:
        return None
    goal = view.goal
    told = facts_told(traj, view)
    holds: dict[int, bool] = {}  # id(state) -> the goal conditions hold; unchanged steps share a state
    for step, state in zip(traj.steps, tr.states, strict=True):
        if view.changed_at is not None and step.turn <= view.changed_at:
            continue
        if not all(told.get(f.name, step.turn + 1) <= step.turn for f in goal.tell):
            continue
        if id(state) not in holds:
            holds[id(state)] = all(evaluate(c, state)[0] for c in goal.state)
        if holds[id(state)]:
            return step.turn
    return None


def _tokens(traj: Trajectory) -> dict[str, int] | None:
    prompt = completion = 0
    found = False
    for step in traj.steps:
        gen = step.generation
        if step.role != "support" or not gen:
            continue
        usage = gen["usage"]
        if usage:
            found = True
            prompt += int(usage["prompt_tokens"] or 0)
            completion += int(usage["completion_tokens"] or 0)
        elif gen["token_ids"]:
            found = True
            completion += len(gen["token_ids"])
            prompt += (gen["prompt_from"] or 0) + len(gen["prompt_ids"] or [])  # the whole prompt's length
    return {"prompt": prompt, "completion": completion} if found else None


@register
class EfficiencyScorer(Scorer):
    """Reference length over support actions, discounted by the wasted share; the waste itemised."""

    name = "efficiency"
    forkable = True

    def score(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        support_steps = [s for s in traj.steps if s.role == "support"]
        if traj.termination == "infra_error" or not support_steps:
            return None
        inst = ctx.instance(traj)
        specs = inst.domain.toolkit.specs()
        ref = reference_run(ctx, traj)
        support = calls(traj)
        view = goal_view(traj, inst.spec)
        met = _goal_met_turn(ctx, traj, view)
        waste: list[tuple[str, int, str]] = []
        waste += [("repeat_call", c.turn, f"{c.name} repeated with the same arguments") for c in _repeats(traj)]
        waste += [("unused_read", c.turn, f"nothing {c.name} returned was used") for c in _unused_reads(traj, support, inst.spec, specs)]
        if met is not None:
            waste += [("after_goal", c.turn, f"{c.name} after the goal was met (turn {met})")
                      for c in support if c.turn > met and c.name not in ENDINGS]
        waste += [("malformed_action", s.turn, f"malformed action: {s.error}") for s in support_steps if s.error]
        waste += [("malformed_action", c.turn, f"{c.name}: {c.record.error_type}") for c in support
                  if c.record.error_type in MALFORMED_CALL]
        waste.sort(key=lambda w: w[1])
        counts = {kind: sum(1 for w in waste if w[0] == kind)
                  for kind in ("repeat_call", "unused_read", "after_goal", "malformed_action")}
        wasted = len({turn for _, turn, _ in waste})
        score = min(1.0, ref.support_actions / len(support_steps)) * (1.0 - wasted / len(support_steps))
        details = {"turns": len(traj.steps), "support_turns": len(support_steps), "tool_calls": len(support),
                   "reference_actions": ref.support_actions, "reference_calls": ref.support_calls,
                   "goal_met_turn": met, **counts, "tokens": _tokens(traj)}
        findings = [Finding(kind=kind, turn=turn, blame="agent", message=message) for kind, turn, message in waste]
        return ScoreResult(score=score, findings=findings, details=details)
