"""The trajectory schema, version 1: one episode, everything needed to score and train on it.

Wall-clock values live only in fields whose names start with ``wall_``; everything else is a
function of the scenario file, the seed and the agents, so two runs with one seed are identical
once ``wall_*`` fields are dropped (:func:`trajgym.trajectory.store.strip_wall`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trajgym.scenario.schema import TerminationReason

TRAJECTORY_VERSION = 1


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentRecord(_M):
    role: str
    name: str
    kind: str = Field(description="oracle, random, scripted_customer, scripted_supervisor, external, ...")
    model: str | None = None
    config: dict[str, Any] = Field(default_factory=dict, description="sampling settings and the like")


class FaultRecord(_M):
    index: int = Field(description="index of the fault in the scenario's faults list")
    kind: str
    tool: str | None
    turn: int
    call: int = Field(description="nth call of the tool (or nth customer turn for a goal change)")
    applied: bool = Field(description="whether a write took effect despite the fault")
    detail: dict[str, Any] = Field(default_factory=dict)


class ViolationRecord(_M):
    turn: int
    role: str
    tool: str
    rule: str
    message: str


class ToolCallRecord(_M):
    id: str
    name: str
    arguments: Any
    ok: bool
    content: Any = Field(description="what the caller saw (an error object when ok is false)")
    error_type: str | None
    applied: bool
    latency_ms: int = Field(description="simulated latency added by the fault layer")
    faults: list[FaultRecord]
    violations: list[ViolationRecord]


class StepRecord(_M):
    turn: int
    role: str
    observation: list[dict[str, Any]] = Field(description="chat messages the role received before acting")
    action: str = Field(description="the raw action text")
    message: str | None = Field(description="chat message delivered to the partner, if any")
    tool_calls: list[ToolCallRecord]
    error: str | None = Field(description="why the action was malformed, if it was")
    generation: dict[str, Any] | None = Field(
        default=None, description="what the model returned with the action: token ids, logprobs, sampling settings"
    )
    wall_time: float = Field(description="wall clock (unix seconds) when the step started")
    wall_ms: float = Field(description="wall time spent in the env on this step")


class ConditionResult(_M):
    path: str
    operator: str
    expected: Any
    actual: Any
    ok: bool


class FactResult(_M):
    name: str
    told: bool
    turn: int | None


class ForbiddenHit(_M):
    turn: int
    tool: str
    arguments: Any
    reason: str | None


class Outcome(_M):
    success: bool = Field(description="goal met, facts told, allowed ending, no violation, no forbidden call")
    conditions: list[ConditionResult]
    facts: list[FactResult]
    end_ok: bool
    allowed_endings: list[TerminationReason]
    violations: list[ViolationRecord]
    forbidden: list[ForbiddenHit]
    goal_changed_at: int | None


class Provenance(_M):
    trajgym_version: str
    git_revision: str | None
    python: str
    command: str | None = None


class Trajectory(_M):
    schema_version: Literal[1] = 1
    episode_id: str
    scenario_id: str
    scenario_hash: str = Field(description="sha256 (16 hex) of the scenario file's canonical content")
    scenario_path: str
    domain: str
    seed: int
    trial: int
    variables: dict[str, Any]
    agents: list[AgentRecord]
    steps: list[StepRecord]
    faults: list[FaultRecord]
    final_state: dict[str, Any]
    termination: TerminationReason | Literal["infra_error"]
    infra_error: str | None = Field(
        default=None, description="why the infrastructure failed; such episodes are not scored and are run again"
    )
    truncated: bool
    max_turns: int | None = Field(
        default=None, description="the turn limit the episode ran under: the scenario's limits.max_turns, or a "
                                  "job's lower cap (--max-turns)")
    rewards: dict[str, float]
    outcome: Outcome
    provenance: Provenance
    wall_started_at: float
    wall_duration_s: float
