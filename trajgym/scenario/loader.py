"""Load scenario files: YAML -> located data -> validated template -> seeded instances.

:func:`load` returns a :class:`ScenarioTemplate`; ``template.instantiate(seed)`` draws the
variables and builds the world. Every problem in a file is reported as ``file:line:col: message``
through :class:`~trajgym.errors.ScenarioError`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from trajgym.errors import Problem, ScenarioError, UnknownDomainError
from trajgym.scenario import variables as V
from trajgym.scenario.schema import SCHEMA_VERSION, GoalChange, RefAction, Scenario, ToolFault
from trajgym.scenario.yamlfile import LocatedData, load_located
from trajgym.seeding import rng
from trajgym.world.base import Domain
from trajgym.world.control import ControlTools
from trajgym.world.registry import get_domain

CHECK_SEEDS = (0, 1, 2, 3)


@dataclass
class ScenarioInstance:
    """One concrete episode setup: the template with its variables drawn from ``seed``."""

    template: ScenarioTemplate
    seed: int
    variables: dict[str, Any]
    spec: Scenario
    state: BaseModel
    policy_params: BaseModel
    policy_text: str

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def domain(self) -> Domain[Any, Any]:
        return self.template.domain

    def fresh_state(self) -> BaseModel:
        """A new, independent copy of the initial world (for replays and stale reads)."""
        return self.state.model_copy(deep=True)


@dataclass
class ScenarioTemplate:
    """A validated scenario file."""

    path: Path
    located: LocatedData
    spec: Scenario
    domain: Domain[Any, Any]
    content_hash: str

    @property
    def id(self) -> str:
        return self.spec.id

    def instantiate(self, seed: int) -> ScenarioInstance:
        """Draw the variables from ``seed`` and build the initial world."""
        values = V.draw(self.spec.variables, self.spec.today, rng(seed, "variables"))
        raw = V.fill({k: v for k, v in self.located.data.items() if k != "variables"}, values)
        raw["variables"] = self.located.data.get("variables", {})
        spec = Scenario.model_validate(raw)
        world = dict(spec.world)
        world.setdefault("today", spec.today)
        state = self.domain.state_model.model_validate(world)
        params = self.domain.policy_params.model_validate(spec.policy.rules)
        text = spec.policy.text or self.domain.policy_text
        policy_text = text.format(**params.model_dump()) if spec.policy.text is None else text
        return ScenarioInstance(self, seed, values, spec, state, params, policy_text)


# ---------------------------------------------------------------------------------------------
# error messages


def _all_field_names(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    seen = seen or set()
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        for arg in _models_in(info.annotation):
            names |= _all_field_names(arg, seen)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()) or ():
        out += _models_in(arg)
    for meta in getattr(annotation, "__metadata__", ()) or ():
        out += _models_in(meta)
    return out


def _pydantic_problems(exc: ValidationError, located: LocatedData, prefix: tuple[str | int, ...],
                       vocabulary: set[str]) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        field = ".".join(str(p) for p in loc if not (isinstance(p, str) and p in _UNION_TAGS))
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            close = difflib.get_close_matches(key, sorted(vocabulary), n=1, cutoff=0.7)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            where = ".".join(str(p) for p in loc[:-1]) or "the top level"
            problems.append(located.problem(loc, f"unknown key '{key}' in {where}{hint}", key=True))
        elif kind == "missing":
            problems.append(located.problem(loc[:-1], f"missing required key '{loc[-1]}' in "
                                                      f"{'.'.join(str(p) for p in loc[:-1]) or 'the top level'}"))
        else:
            got = err.get("input")
            shown = json.dumps(got, default=str)[:60] if not isinstance(got, dict | list) else type(got).__name__
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            problems.append(located.problem(loc, f"{field}: {msg} (got {shown})"))
    return problems


_UNION_TAGS = {"ToolFault", "GoalChange", "customer_goal_change", "service_unavailable",
               "internal_error", "not_found", "timeout", "latency", "rate_limit", "stale_read",
               "malformed", "partial", "outage"}


# ---------------------------------------------------------------------------------------------
# semantic checks


def _tool_problems(spec: Scenario, domain: Domain[Any, Any], located: LocatedData) -> list[Problem]:
    problems = []
    domain_tools = domain.toolkit.specs()
    all_tools = {**domain_tools, **ControlTools.specs()}

    def unknown(name: str, path: tuple[str | int, ...], pool: dict[str, Any] | set[str]) -> Problem:
        close = difflib.get_close_matches(name, sorted(pool), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return located.problem(path, f"unknown tool '{name}' in domain '{domain.name}'{hint}")

    for role, names in spec.tools.items():
        if role not in spec.roles:
            problems.append(located.problem(("tools", role),
                                            f"tools are given for role '{role}', which is not in roles {spec.roles}",
                                            key=True))
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

    def check_reference(actions: list[RefAction], base: tuple[str | int, ...]) -> None:
        for i, action in enumerate(actions):
            if action.call is None:
                continue
            if action.call not in all_tools:
                problems.append(unknown(action.call, (*base, i, "call"), all_tools))
                continue
            if action.call not in support_tools:
                problems.append(located.problem((*base, i, "call"),
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
    return problems


def _goal_problems(spec: Scenario, state: BaseModel, located: LocatedData) -> list[Problem]:
    problems = []
    data = state.model_dump(mode="json")
    goals = [(("goal",), spec.goal)] + [
        (("faults", i, "goal"), f.goal) for i, f in enumerate(spec.faults) if isinstance(f, GoalChange)
    ]
    for base, goal in goals:
        for i, cond in enumerate(goal.state):
            parts = cond.path.split(".")
            path = (*base, "state", i, "path")
            if parts[0] not in data:
                close = difflib.get_close_matches(parts[0], sorted(data), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                problems.append(located.problem(path, f"goal path '{cond.path}': the world has no '{parts[0]}'{hint}"))
                continue
            top = data[parts[0]]
            if len(parts) > 1 and isinstance(top, dict) and top and parts[1] not in top:
                problems.append(located.problem(
                    path, f"goal path '{cond.path}': {parts[0]} '{parts[1]}' does not exist "
                          f"(defined: {', '.join(sorted(top))})"))
    return problems


def _reference_arg_problems(spec: Scenario, domain: Domain[Any, Any], located: LocatedData) -> list[Problem]:
    """Arguments of every reference call (filled in) validate against the tool's schema."""
    tools = {**domain.toolkit.specs(), **ControlTools.specs()}
    lists = [(("reference",), spec.reference)] + [
        (("faults", i, "reference"), f.reference) for i, f in enumerate(spec.faults) if isinstance(f, GoalChange)
    ]
    problems = []
    for base, actions in lists:
        for i, action in enumerate(actions):
            if action.call is None or action.call not in tools:
                continue
            try:
                tools[action.call].args_model.model_validate(action.args)
            except ValidationError as exc:
                for e in exc.errors(include_url=False):
                    loc = (*base, i, "args", *e["loc"])
                    what = ".".join(str(p) for p in e["loc"]) or "args"
                    problems.append(located.problem(loc, f"arguments of {action.call}: {what}: {e['msg']}"))
    return problems


def _template_problems(raw: dict[str, Any], spec: Scenario, located: LocatedData) -> list[Problem]:
    problems = [located.problem(p, m) for p, m in V.check_defined(spec, raw)]
    if problems:
        return problems
    values = V.draw(spec.variables, spec.today, rng(0, "variables"))
    for path, _name, _field in V.references({k: v for k, v in raw.items() if k != "variables"}):
        node: Any = raw
        for part in path:
            node = node[part]
        try:
            V.fill(node, values)
        except V.TemplateError as exc:
            problems.append(located.problem(path, str(exc)))
    return problems


def _instance_problems(template: ScenarioTemplate) -> list[Problem]:
    located = template.located
    seen: set[str] = set()
    problems: list[Problem] = []
    for seed in CHECK_SEEDS:
        try:
            inst = template.instantiate(seed)
        except ValidationError as exc:
            title = exc.title
            if title == "Scenario":
                prefix: tuple[str | int, ...] = ()
            elif title == template.domain.policy_params.__name__:
                prefix = ("policy", "rules")
            else:
                prefix = ("world",)
            vocab = _all_field_names(template.domain.state_model) | _all_field_names(template.domain.policy_params)
            found = _pydantic_problems(exc, located, prefix, vocab)
        else:
            found = [located.problem(("world", *p), m) for p, m in template.domain.entity_problems(inst.state)]
            found += _goal_problems(inst.spec, inst.state, located)
            found += _reference_arg_problems(inst.spec, template.domain, located)
        for problem in found:
            if problem.message not in seen:
                seen.add(problem.message)
                problems.append(problem)
        if problems:
            break
    return problems


# ---------------------------------------------------------------------------------------------
# entry points


def parse(text: str, filename: str) -> ScenarioTemplate:
    """Validate scenario ``text`` (named ``filename`` in messages). Raises ScenarioError."""
    located = load_located(text, filename)
    data = located.data
    if not isinstance(data, dict):
        raise ScenarioError([located.problem((), f"a scenario is a YAML mapping, not {type(data).__name__}")])
    version = data.get("schema_version")
    if version is None:
        raise ScenarioError([located.problem((), f"missing required key 'schema_version' (write schema_version: {SCHEMA_VERSION})")])
    if version != SCHEMA_VERSION:
        raise ScenarioError([located.problem(("schema_version",),
                                             f"schema_version {version!r} is not supported; this trajgym reads "
                                             f"version {SCHEMA_VERSION}")])
    try:
        spec = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_pydantic_problems(exc, located, (), _all_field_names(Scenario))) from None
    try:
        domain = get_domain(spec.domain)
    except UnknownDomainError as exc:
        raise ScenarioError([located.problem(("domain",), str(exc))]) from None
    problems = _template_problems(data, spec, located)
    problems += _tool_problems(spec, domain, located)
    if problems:
        raise ScenarioError(problems)
    canonical = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    template = ScenarioTemplate(Path(filename), located, spec, domain, digest)
    problems = _instance_problems(template)
    if problems:
        raise ScenarioError(problems)
    return template


def load(path: str | Path) -> ScenarioTemplate:
    """Load and validate one scenario file (cached by path and modification time)."""
    p = Path(path)
    try:
        stat = p.stat()
    except OSError as exc:
        raise ScenarioError([Problem(str(p), 1, 1, f"cannot read file: {exc.strerror}")]) from None
    return copy.copy(_load_cached(str(p.resolve()), str(p), stat.st_mtime_ns, stat.st_size))


@cache
def _load_cached(resolved: str, shown: str, mtime: int, size: int) -> ScenarioTemplate:
    p = Path(resolved)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([Problem(shown, 1, 1, f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except OSError as exc:
        raise ScenarioError([Problem(shown, 1, 1, f"cannot read file: {exc.strerror}")]) from None
    template = parse(text, shown)
    template.path = Path(shown)
    return template
