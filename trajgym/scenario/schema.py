"""The scenario language, version 1: pydantic models, unknown keys rejected.

A scenario file is a *template*: strings may contain ``${name}`` references to ``variables``, drawn
from the episode seed, so one file yields many distinct episodes. The models below validate the
template's structure; the domain's own state model validates the world after the variables are
filled in (see :mod:`trajgym.world.loader`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trajgym.registry import suggest

SCHEMA_VERSION = 1
ID_PATTERN = r"^[a-z0-9][a-z0-9_.\-]*$"

RoleName = Literal["support", "customer", "supervisor"]
Mood = Literal["calm", "angry", "confused", "hurried"]
Expertise = Literal["novice", "average", "expert"]
TerminationReason = Literal[
    "customer_ended", "customer_requested_human", "transferred_to_human", "max_turns"
]
ToolFaultKind = Literal[
    "service_unavailable",
    "internal_error",
    "not_found",
    "timeout",
    "latency",
    "rate_limit",
    "stale_read",
    "malformed",
    "partial",
    "outage",
    "permission_denied",
    "disk_full",
    "command_not_found",
    "network_error",
]
Pool = Literal["first_name", "last_name", "city", "street", "product", "color", "size"]
Recovery = Literal["retry", "wait", "verify", "escalate", "tell_customer", "use_fallback"]
"""What an agent may rightly do about a failed tool call (see :class:`ToolFault` ``recover``)."""
MATCH_OPERATORS = ("equals", "contains", "regex", "in", "gte", "lte")


class Strict(BaseModel):
    """Base of every scenario model: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class VariableSpec(Strict):
    """How one variable is drawn from the episode seed. Exactly one field is set.

    ``choice`` picks one value (scalars or mappings, read with ``${var.field}``); ``int`` and
    ``float`` draw uniformly from ``[low, high]`` (floats rounded to 2 decimals, like money);
    ``date_ago``/``date_ahead`` give an ISO date that many days before/after ``today``; ``pool``
    draws from a built-in list of names; ``pattern`` replaces ``#`` by a digit and ``?`` by an
    upper-case letter; ``value`` is a constant.
    """

    choice: list[Any] | None = Field(default=None, min_length=1)
    int_range: tuple[int, int] | None = Field(default=None, alias="int")
    float_range: tuple[float, float] | None = Field(default=None, alias="float")
    date_ago: tuple[int, int] | None = None
    date_ahead: tuple[int, int] | None = None
    pool: Pool | None = None
    pattern: str | None = None
    value: Any = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VariableSpec:
        set_fields = sorted(self.model_fields_set)
        if len(set_fields) != 1:
            written = [VariableSpec.model_fields[name].alias or name for name in set_fields]
            raise ValueError(
                "a variable needs exactly one of: choice, int, float, date_ago, date_ahead, "
                f"pool, pattern, value (got {', '.join(written) or 'none'})"
            )
        for rng_name in ("int_range", "float_range", "date_ago", "date_ahead"):
            bounds = getattr(self, rng_name)
            if bounds is not None and bounds[0] > bounds[1]:
                raise ValueError(f"range [{bounds[0]}, {bounds[1]}] is empty: write [low, high]")
        return self


class Condition(Strict):
    """A condition on the final world state. ``path`` is dotted, e.g. ``orders.O1.status``.

    Exactly one operator is given. ``count`` compares the length of a collection.
    """

    path: str = Field(min_length=1)
    equals: Any = None
    not_equals: Any = None
    one_of: list[Any] | None = Field(default=None, alias="in")
    gte: float | None = None
    lte: float | None = None
    contains: Any = None
    exists: bool | None = None
    count: int | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        ops = [f for f in self.model_fields_set if f != "path"]
        if len(ops) != 1:
            raise ValueError(
                "a condition needs exactly one operator: equals, not_equals, in, gte, lte, "
                f"contains, exists or count (got {sorted(ops) or 'none'})"
            )
        return self

    @property
    def operator(self) -> str:
        for name in self.model_fields_set:  # a loop, not next(genexpr): scorers ask it per step
            if name != "path":
                return name
        raise AssertionError("a validated condition has an operator")


class Fact(Strict):
    """A fact the customer must be told: some support message contains one of ``any_of``."""

    name: str
    any_of: list[str] = Field(min_length=1)


_DEFAULT_END: tuple[TerminationReason, ...] = ("customer_ended",)


class Goal(Strict):
    """What success means: final-state conditions, facts told, and how the episode may end."""

    state: list[Condition] = Field(default_factory=list)
    tell: list[Fact] = Field(default_factory=list)
    end: list[TerminationReason] = Field(default_factory=lambda: list(_DEFAULT_END))


class RefAction(Strict):
    """One step of the reference solution: ``say`` a message, or ``call`` a tool with ``args``."""

    say: str | None = None
    call: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    fallback: list[RefAction] | None = Field(
        default=None, description="what to do instead when this call keeps failing (replaces the rest of the plan)"
    )

    @model_validator(mode="after")
    def _say_or_call(self) -> RefAction:
        if (self.say is None) == (self.call is None):
            raise ValueError("a reference action has exactly one of 'say' or 'call'")
        if self.say is not None and self.args:
            raise ValueError("'args' goes with 'call', not with 'say'")
        if self.say is not None and self.fallback is not None:
            raise ValueError("'fallback' goes with 'call', not with 'say'")
        return self


class ForbiddenAction(Strict):
    """A tool call that must never happen; ``args`` (if given) must all match for a hit."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None


class Checkpoint(Strict):
    """Something observable in a trajectory: exactly one of ``call`` (a tool call by support, which
    ``args`` narrows), ``tell`` (a support message to the customer containing any of these
    strings, case-insensitive) or ``state`` (a condition that holds on the world after a step).

    An ``args`` value is matched for equality (numbers within 0.005), or is a mapping with one
    operator: ``{contains: text}``, ``{regex: pattern}``, ``{in: [values]}``, ``{gte: n}``,
    ``{lte: n}`` or ``{equals: value}``.
    """

    name: str | None = Field(default=None, description="how reports name it (default: made from the rest)")
    call: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    tell: list[str] | None = Field(default=None, min_length=1)
    state: Condition | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Checkpoint:
        given = [k for k in ("call", "tell", "state") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'call', 'tell' or 'state' (got {', '.join(given) or 'none'})")
        if self.args and self.call is None:
            raise ValueError("'args' goes with 'call'")
        return self

    @field_validator("args")
    @classmethod
    def _matchers(cls, args: dict[str, Any]) -> dict[str, Any]:
        for arg, matcher in args.items():
            _check_matcher(arg, matcher)
        return args

    def label(self) -> str:
        """A short human name: ``name`` if given, else the call, the text or the condition."""
        if self.name:
            return self.name
        if self.call is not None:
            shown = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
            return f"{self.call}({shown})"
        if self.tell is not None:
            return "tell " + " / ".join(repr(t) for t in self.tell)
        assert self.state is not None
        return f"{self.state.path} {self.state.operator} {getattr(self.state, self.state.operator)!r}"


def _check_matcher(arg: str, matcher: Any) -> None:
    if not isinstance(matcher, dict):
        return
    ops = [str(k) for k in matcher]
    if len(ops) != 1 or ops[0] not in MATCH_OPERATORS:
        unknown = [op for op in ops if op not in MATCH_OPERATORS]
        close = suggest(unknown[0], MATCH_OPERATORS) if unknown else None
        hint = f"; did you mean '{close}'?" if close else ""
        raise ValueError(f"the matcher of argument '{arg}' needs exactly one of {', '.join(MATCH_OPERATORS)} "
                         f"(got {', '.join(ops) or 'none'}){hint}; to match a mapping, write {{equals: ...}}")
    op, value = ops[0], matcher[ops[0]]
    if isinstance(value, str) and "${" in value and op != "regex":
        return  # a template: checked again once the variables are filled in
    if op == "regex":
        if not isinstance(value, str):
            raise ValueError(f"the regex of argument '{arg}' should be text")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"the regex of argument '{arg}' does not compile: {exc}") from None
    elif op == "contains" and not isinstance(value, str):
        raise ValueError(f"'contains' of argument '{arg}' should be text")
    elif op == "in" and not isinstance(value, list):
        raise ValueError(f"'in' of argument '{arg}' should be a list of values")
    elif op in ("gte", "lte") and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"'{op}' of argument '{arg}' should be a number")


class Milestone(Checkpoint):
    """A checkpoint a good trajectory passes; milestones are matched in the order they are listed."""


class Minefield(Checkpoint):
    """An action that must never happen: a call, something said, or a state reached."""

    reason: str | None = None


class _Trigger(Strict):
    """When a fault fires: the nth call(s), a window of turns, and/or a probability.

    All given triggers must hold; with none given the fault fires on every call.
    """

    nth_call: int | list[int] | None = None
    turns: tuple[int, int] | None = None
    probability: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_trigger(self) -> _Trigger:
        calls = [self.nth_call] if isinstance(self.nth_call, int) else (self.nth_call or [])
        if any(n < 1 for n in calls):
            raise ValueError("nth_call counts from 1")
        if self.turns is not None and self.turns[0] > self.turns[1]:
            raise ValueError("turns is a window [first, last] with first <= last")
        return self

    def calls(self) -> frozenset[int]:
        if self.nth_call is None:
            return frozenset()
        return frozenset([self.nth_call] if isinstance(self.nth_call, int) else self.nth_call)


class ToolFault(_Trigger):
    """A failure injected between a caller and a tool (or every tool with ``tool: '*'``).

    ``args`` narrows it to calls with those arguments (e.g. one step of a workflow);
    ``latency_ms`` is added simulated latency (``latency``, ``timeout``); ``retry_after`` the turns a
    ``rate_limit`` lasts; ``applied`` says whether a timed-out write took effect anyway.
    """

    kind: ToolFaultKind
    tool: str | list[str] = "*"
    args: dict[str, Any] = Field(default_factory=dict, description="fire only on calls with these arguments")
    latency_ms: int = Field(default=0, ge=0)
    retry_after: int = Field(default=2, ge=1)
    applied: bool = False
    message: str | None = None
    recover: list[Recovery] | None = Field(
        default=None, min_length=1,
        description="what the agent may rightly do about it (default: by kind, see trajgym.scorers.recovery)")

    @model_validator(mode="after")
    def _outage_needs_window(self) -> ToolFault:
        if self.kind == "outage" and self.turns is None:
            raise ValueError("an outage needs 'turns: [first, last]', the window it lasts")
        return self

    def tools(self) -> list[str]:
        return [self.tool] if isinstance(self.tool, str) else list(self.tool)


class GoalChange(_Trigger):
    """The customer changes their mind on their ``at_customer_turn``-th turn (2 = first reply).

    ``message`` is what they say; ``goal`` replaces the scenario goal and ``reference`` the rest
    of the reference solution; ``milestones`` (if given) replace the scenario's, and ``minefields``
    are added to the scenario's from the change on.
    """

    kind: Literal["customer_goal_change"]
    at_customer_turn: int = Field(ge=2)
    message: str
    goal: Goal
    reference: list[RefAction] = Field(min_length=1)
    milestones: list[Milestone] | None = None
    minefields: list[Minefield] = Field(default_factory=list)


Fault = Annotated[ToolFault | GoalChange, Field(discriminator="kind")]


class CustomerFact(Strict):
    """Something the customer knows and says when the agent asks about one of ``keywords``."""

    keywords: list[str] = Field(min_length=1)
    says: str


class Persona(Strict):
    name: str
    mood: Mood = "calm"
    language: str = "en"
    expertise: Expertise = "average"


class CustomerSpec(Strict):
    """The simulated customer: who they are, what they open with, what they know."""

    persona: Persona
    opening: str
    facts: list[CustomerFact] = Field(default_factory=list)
    patience: int = Field(default=3, ge=0)


class SupervisorSpec(Strict):
    """The supervisor role: approves requests up to ``approval_limit``, denies a request whose
    arguments mention any of ``deny``, and answers "later" to the first ``delay`` requests, so the
    agent has to chase."""

    approval_limit: float = Field(default=1000.0, ge=0)
    deny: list[str] = Field(default_factory=list)
    delay: int = Field(default=0, ge=0)


class PolicySpec(Strict):
    """The written policy (``text``, default: the domain's) and the parameters of its rules."""

    text: str | None = None
    rules: dict[str, Any] = Field(default_factory=dict)


class Limits(Strict):
    max_turns: int = Field(default=40, ge=2, le=10_000)


class Scenario(Strict):
    """A scenario template, as written in YAML."""

    schema_version: int
    id: str = Field(pattern=ID_PATTERN)
    domain: str
    description: str
    tags: list[str] = Field(default_factory=list)
    roles: list[RoleName] = Field(min_length=2)
    today: dt.date = dt.date(2026, 3, 10)
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    world: dict[str, Any]
    tools: dict[RoleName, list[str]]
    policy: PolicySpec = Field(default_factory=PolicySpec)
    customer: CustomerSpec | None = None
    supervisor: SupervisorSpec | None = None
    goal: Goal
    forbidden: list[ForbiddenAction] = Field(default_factory=list)
    milestones: list[Milestone] = Field(default_factory=list)
    minefields: list[Minefield] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    reference: list[RefAction] = Field(min_length=1)
