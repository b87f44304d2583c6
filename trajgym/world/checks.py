"""Checks of a scenario against its domain: tool names and arguments, paths into the world.

The scenario language checks a file on its own (:mod:`trajgym.scenario.loader`); these checks need
the domain the file names, so they live here, one layer up. Each returns located problems.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from trajgym.errors import Problem
from trajgym.registry import suggest
from trajgym.scenario import diagnostics as diag
from trajgym.scenario.loader import checkpoints, reference_actions
from trajgym.scenario.schema import Condition, GoalChange, Minefield, RefAction, Scenario, ToolFault
from trajgym.scenario.yamlfile import LocatedData
from trajgym.world.base import Domain
from trajgym.world.conditions import evaluate
from trajgym.world.control import ControlTools


def tool_problems(spec: Scenario, domain: Domain[Any, Any], located: LocatedData) -> list[Problem]:
    """Every tool a scenario names exists in its domain, and role 'support' may call the ones the
    reference and the milestones need."""
    problems = []
    domain_tools = domain.toolkit.specs()
    all_tools = {**domain_tools, **ControlTools.specs()}

    def unknown(name: str, path: tuple[str | int, ...], pool: dict[str, Any] | set[str]) -> Problem:
        close = suggest(name, pool)
        hint = f"; did you mean '{close}'?" if close else ""
        return located.problem(path, f"unknown tool '{name}' in domain '{domain.name}'{hint}")

    for role, names in spec.tools.items():
        if role not in spec.roles:
            problems.append(located.problem(("tools", role),
                                            f"tools are given for role '{role}', which is not in roles "
                                            f"({', '.join(spec.roles)}); add '{role}' to roles or remove "
                                            f"tools.{role}", key=True))
        for i, name in enumerate(names):
            if name not in all_tools:
                problems.append(unknown(name, ("tools", role, i), all_tools))
    for role in ("support", "customer"):
        if role not in spec.roles:
            problems.append(located.problem(("roles",), f"roles must include '{role}' in domain '{domain.name}'"))
    if "customer" in spec.roles and spec.customer is None:
        problems.append(located.problem((), "role 'customer' needs a 'customer' section (persona, opening, facts)"))
    if "supervisor" in spec.roles and spec.supervisor is None:
        problems.append(located.problem(("roles",), "role 'supervisor' needs a 'supervisor' section (approval_limit)"))

    support_tools = set(spec.tools.get("support", []))
    # a tool that a misspelt name under tools.support was meant to be: reported there already
    meant = {close for name in support_tools - set(all_tools) if (close := suggest(name, all_tools))}

    def check_reference(actions: list[RefAction], base: tuple[str | int, ...]) -> None:
        for path, action in reference_actions(actions, base):
            if action.call is None:
                continue
            if action.call not in all_tools:
                problems.append(unknown(action.call, (*path, "call"), all_tools))
                continue
            if action.call not in support_tools and action.call not in meant:
                problems.append(located.problem((*path, "call"),
                                                f"reference calls '{action.call}', which role 'support' may not "
                                                "call; add it under tools.support"))

    check_reference(spec.reference, ("reference",))
    for i, forbidden in enumerate(spec.forbidden):
        if forbidden.tool not in all_tools:
            problems.append(unknown(forbidden.tool, ("forbidden", i, "tool"), all_tools))
    for i, fault in enumerate(spec.faults):
        if isinstance(fault, ToolFault):
            for j, name in enumerate(fault.tools()):
                if name != "*" and name not in domain_tools:
                    path = ("faults", i, "tool") if isinstance(fault.tool, str) else ("faults", i, "tool", j)
                    problems.append(unknown(name, path, domain_tools))
        elif isinstance(fault, GoalChange):
            check_reference(fault.reference, ("faults", i, "reference"))
            if "customer" not in spec.roles:
                problems.append(located.problem(("faults", i), "customer_goal_change needs role 'customer'"))
    for where, points in checkpoints(spec):
        for j, point in enumerate(points):
            at = (*where, j)
            if point.call is None:
                continue
            if point.call not in all_tools:
                problems.append(unknown(point.call, (*at, "call"), all_tools))
                continue
            if not isinstance(point, Minefield) and point.call not in support_tools and point.call not in meant:
                problems.append(located.problem((*at, "call"),
                                                f"milestone calls '{point.call}', which role 'support' may not "
                                                "call, so no trajectory can pass it; add it under tools.support"))
            known = all_tools[point.call].args_model.model_fields
            for arg in point.args:
                if arg not in known:
                    close = suggest(arg, known)
                    hint = f"; did you mean '{close}'?" if close else f" (arguments: {', '.join(known) or 'none'})"
                    problems.append(located.problem((*at, "args", arg),
                                                    f"unknown argument '{arg}' of {point.call}{hint}", key=True))
    return problems


def _path_problem(cond: Condition, data: dict[str, Any], path: tuple[str | int, ...], what: str,
                  located: LocatedData) -> Problem | None:
    """A condition whose path names a collection or an entity the world does not have."""
    parts = cond.path.split(".")
    if parts[0] not in data:
        close = suggest(parts[0], data)
        hint = f"; did you mean '{close}'?" if close else ""
        return located.problem(path, f"{what} path '{cond.path}': the world has no '{parts[0]}'{hint}")
    top = data[parts[0]]
    if len(parts) > 1 and isinstance(top, dict) and top and parts[1] not in top:
        return located.problem(path, f"{what} path '{cond.path}': {parts[0]} '{parts[1]}' does not exist "
                                     f"(defined: {', '.join(sorted(top))})")
    return None


def goal_problems(spec: Scenario, state: BaseModel, domain: Domain[Any, Any],
                  located: LocatedData) -> list[Problem]:
    """Every goal, milestone and minefield state path leads somewhere in the initial world ``state``."""
    problems = []
    data = state.model_dump(mode="json")
    goals = [(("goal",), spec.goal)] + [
        (("faults", i, "goal"), f.goal) for i, f in enumerate(spec.faults) if isinstance(f, GoalChange)
    ]
    for base, goal in goals:
        for i, cond in enumerate(goal.state):
            found = _path_problem(cond, data, (*base, "state", i, "path"), "goal", located)
            if found is not None:
                problems.append(found)
    for where, points in checkpoints(spec):
        what = "milestone" if where[-1] == "milestones" else "minefield"
        for j, point in enumerate(points):
            if point.state is None:
                continue
            if not domain.live_state:
                problems.append(located.problem((*where, j, "state"), (
                    f"a {what} 'state' cannot be checked in domain '{domain.name}': its world lives outside the "
                    "state model while the episode runs (only the end is recorded); use a 'call' with args, or a "
                    "goal condition")))
                continue
            found = _path_problem(point.state, data, (*where, j, "state", "path"), what, located)
            if found is not None:
                problems.append(found)
            elif what == "minefield" and evaluate(point.state, data)[0]:
                problems.append(located.problem((*where, j, "state"), (
                    f"minefield '{point.label()}' already holds in the initial world, so every trajectory "
                    "would hit it; describe a state the agent must never cause")))
    return problems


def reference_arg_problems(spec: Scenario, domain: Domain[Any, Any], located: LocatedData) -> list[Problem]:
    """Arguments of every reference call (filled in) validate against the tool's schema."""
    tools = {**domain.toolkit.specs(), **ControlTools.specs()}
    lists = [(("reference",), spec.reference)] + [
        (("faults", i, "reference"), f.reference) for i, f in enumerate(spec.faults) if isinstance(f, GoalChange)
    ]
    problems = []
    for base, actions in lists:
        for path, action in reference_actions(actions, base):
            if action.call is None or action.call not in tools:
                continue
            try:
                tools[action.call].args_model.model_validate(action.args)
            except ValidationError as exc:
                frame = diag.Frame(tools[action.call].args_model, (*path, "args"),
                                label=f"the call to {action.call}", noun="argument")
                problems += diag.problems(exc, located, frame)
    return problems
