"""The trajectory schema, version 2: one episode, everything needed to score and train on it.

Wall-clock values live only in fields whose names start with ``wall_``; everything else is a
function of the scenario file, the seed and the agents, so two runs with one seed are identical
once ``wall_*`` fields are dropped (:func:`trajgym.trajectory.store.strip_wall`).

What version 2 adds to version 1 (whose files are still read, upgraded in memory by
:mod:`trajgym.trajectory.v1`):

- ``policy``: who played, as a stable id of every agent's identity (kind, name, model, weights,
  behavioural settings). It is part of the work unit's key, so episodes of two policies on the same
  seeds are two units, and ``episode_id`` is unique across policies; ``job_id`` names the job.
- a typed :class:`Generation` per model turn, with the **weights id** of what was served;
- **token chains**: a model turn stores only the prompt tokens new to it (``prompt_from``,
  ``prompt_ids``), so a file grows linearly with the turns; :func:`trajgym.trajectory.tokens.role_tokens`
  rebuilds a role's whole sequence with the mask of the tokens the model generated;
- ``tools``: the tool schemas each role was offered, once per episode;
- ``scenario_path`` of a built-in scenario as ``builtin:<domain>/<id>.yaml``, of any other as an
  absolute path, so the file is scored from any working directory.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from trajgym.scenario.schema import TerminationReason

TRAJECTORY_VERSION = 2
INFRA_ERROR = "infra_error"

Termination = TerminationReason | Literal["infra_error"]
"""How an episode ended; ``infra_error``: the infrastructure failed (not scored, played again on resume)."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


@with_config(ConfigDict(extra="forbid"))
class Usage(TypedDict):
    """Token counts of one model call, as the server (or the in-process model) reported them."""

    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


Backend = Literal["openai", "hf", "scripted"]
"""``openai``: a model behind an OpenAI-compatible server; ``hf``: transformers in process;
``scripted``: a simulator said the scenario's own words for the model (no tokens)."""


@with_config(ConfigDict(extra="forbid"))
class Generation(TypedDict):
    """What a model returned with one action (a step's ``generation``).

    A plain typed dict: agents build it on the hot path of a job at no cost, readers get it
    validated (unknown or missing keys are errors). Token fields are None where the backend gave no
    token ids (a server without vLLM's extensions, a scripted line).

    The token chain: each role's model turns form one token sequence, ``prompt + completion`` of a
    turn being the start of the next turn's prompt. A turn stores the prompt tokens from position
    ``prompt_from`` on (``prompt_ids``): the length of the previous turn's prompt and completion
    when it extends them, 0 when it starts the chain or could not extend it (``chain_break`` says
    why; the first turn of a role has none).
    """

    backend: Backend
    model: str | None
    weights_id: Annotated[str | None, Field(description=(
        "the weights actually served: 'sha256:<16 hex>' of the checkpoint's weight files, or the checkpoint's "
        "name where its files could not be read"))]
    loop_generation: Annotated[int | None, Field(description="the self-improvement loop's generation, if any")]
    api: Annotated[Literal["chat", "tokens", "local"] | None, Field(description=(
        "how the prompt was sent: chat messages rendered by the server, token ids (exact by construction), or "
        "a model in process"))]
    sampling: Annotated[dict[str, Any], Field(description="the sampling settings sent (the request's seed included)")]
    tool_choice: Literal["auto", "required", "none"] | None
    logprobs_mode: Annotated[Literal["raw", "processed"] | None, Field(description=(
        "whose log-probabilities: the model's own distribution (raw) or the one sampled from after temperature, "
        "top-p, top-k (processed)"))]
    prompt_from: Annotated[int | None, Field(description=(
        "where prompt_ids start in the role's token sequence: the previous turn's prompt + completion length, "
        "0 for a turn that starts (or restarts) the sequence"))]
    prompt_ids: Annotated[list[int] | None, Field(description="the prompt's token ids from prompt_from on")]
    chain_break: Annotated[str | None, Field(description=(
        "why this turn's prompt does not extend the previous turn's prompt and completion (prompt_from is 0)"))]
    token_ids: Annotated[list[int] | None, Field(description="the completion's token ids, as generated")]
    logprobs: Annotated[list[float] | None, Field(description="one log-probability per completion token")]
    finish_reason: str | None
    usage: Usage | None
    prefill: Annotated[str | None, Field(description=(
        "text put at the start of the answer for the model (its tokens end prompt_ids), e.g. '<tool_call>\\n'"))]
    tool_call_format: Annotated[Literal["api", "text"] | None, Field(description=(
        "how tool calls came: the tools API or <tool_call> text"))]
    raw_content: Annotated[str | None, Field(description="the answer's text as the model wrote it (prefill included)")]
    response_id: str | None
    literal: Annotated[Literal["opening", "goal_change"] | None, Field(description=(
        "backend scripted: which of the scenario's lines was said for the model"))]
    wall_latency_ms: float | None


class AgentRecord(_M):
    """Who played a role. ``model``, ``weights_id`` and ``config`` make its identity (the policy);
    ``transport`` (how a server was reached) and ``persona`` (drawn per episode) do not."""

    role: str
    name: str
    kind: str = Field(description="oracle, random, scripted_customer, scripted_supervisor, openai, hf, llm_customer, ...")
    model: str | None = None
    weights_id: str | None = Field(default=None, description="the weights behind the model (see Generation.weights_id)")
    config: dict[str, Any] = Field(default_factory=dict, description="settings that shape what it does: sampling, tool choice, ...")
    transport: dict[str, Any] = Field(default_factory=dict, description="how it was reached: server URL, timeouts, retries")
    persona: dict[str, Any] | None = Field(default=None, description="the persona a customer simulator played this episode")
    extra_tools: list[dict[str, Any]] = Field(
        default_factory=list, description="tools the agent offered its model besides the role's (the reply tool)")


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
    generation: Generation | None = Field(default=None, description="what the model returned with the action")
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
    schema_version: Literal[2] = 2
    episode_id: str = Field(description="unique per (scenario, seed, trial, policy)")
    job_id: str | None = Field(default=None, description="the job that played it (a hash of its definition)")
    scenario_id: str
    scenario_hash: str = Field(description="sha256 (16 hex) of the scenario file's canonical content")
    scenario_path: str = Field(description="'builtin:<domain>/<file>' for a shipped scenario, else an absolute path")
    domain: str
    seed: int
    trial: int
    policy: str = Field(description="who played: a hash of every agent's identity (trajgym.trajectory.units.policy_id)")
    variables: dict[str, Any]
    agents: list[AgentRecord]
    tools: dict[str, list[dict[str, Any]]] = Field(description="role -> the tool schemas the env offered it")
    steps: list[StepRecord]
    faults: list[FaultRecord]
    final_state: dict[str, Any]
    termination: Termination
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
