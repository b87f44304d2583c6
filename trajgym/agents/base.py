"""The agent interface: a role's new messages and structured info in, one action (text) out.

An agent sees what the env would show the role: new chat messages in the OpenAI format and the
info dict (tool schemas, tool results, injected faults). Scripted agents may also read the
scenario instance from their :class:`AgentContext`; that is what makes them simulators and
oracles rather than learners.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from trajgym.trajectory.schema import Generation
from trajgym.trajectory.units import policy_id
from trajgym.world.loader import ScenarioInstance


@dataclass
class AgentContext:
    """What an agent is told at the start of an episode."""

    role: str
    instance: ScenarioInstance
    tools: list[dict[str, Any]]
    seed: int
    trial: int = 0
    """Which replay of the seed's variation this is: model agents draw other samples per trial."""


class Agent(abc.ABC):
    """Base of every agent. Subclasses set ``kind`` and implement :meth:`act`.

    Its identity (:meth:`describe`: kind, name, model, weights, :meth:`config`) is what a trajectory
    records as who played, and makes the work unit's policy (:func:`policy_of`): two agents with the
    same identity are the same policy. What varies without changing behaviour goes elsewhere: how a
    server is reached in :meth:`transport`, a persona drawn per episode in :attr:`persona`.
    """

    kind: ClassVar[str]
    name: str = ""
    model: str | None = None
    weights_id: str | None = None
    """The weights behind :attr:`model` (a content hash or a checkpoint name), once :meth:`aprepare` knows."""
    persona: dict[str, Any] | None = None
    """The persona a customer simulator plays this episode (recorded apart from its identity)."""
    generation: Generation | None = None
    """Set by model agents after each action: token ids, logprobs, sampling settings, usage. The
    runner copies it into the step record, so trainers need not re-tokenize."""

    def __init__(self) -> None:
        self.name = self.name or self.kind

    async def aprepare(self) -> None:
        """Learn what the identity needs before an episode (a served model's name and weights);
        called once per agent before it plays, by jobs and the runner. Nothing by default."""
        self.prepare()

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """:meth:`aprepare` outside an event loop."""

    def reset(self, ctx: AgentContext) -> None:  # noqa: B027 - optional hook
        """Start a new episode."""

    @abc.abstractmethod
    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        """The next action: the JSON of an assistant message (see :mod:`trajgym.envs.actions`)."""

    async def aact(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        """The async form of :meth:`act`, used by batch jobs; model agents override it.

        Raises :class:`trajgym.errors.InfraError` when the model server stays down.
        """
        return self.act(messages, info)

    def config(self) -> dict[str, Any]:
        """Settings that shape what the agent does (sampling settings for model agents): part of its identity."""
        return {}

    def transport(self) -> dict[str, Any]:
        """How the agent reaches its model (server URL, timeouts, retries, device): not part of its identity."""
        return {}

    def extra_tools(self) -> list[dict[str, Any]]:
        """Tools the agent offers its model besides the role's (the reply tool)."""
        return []

    def describe(self, role: str) -> dict[str, Any]:
        """The :class:`~trajgym.trajectory.schema.AgentRecord` of this agent playing ``role``."""
        return {"role": role, "name": self.name, "kind": self.kind, "model": self.model,
                "weights_id": self.weights_id, "config": self.config(), "transport": self.transport(),
                "persona": dict(self.persona) if self.persona else None, "extra_tools": self.extra_tools()}


def policy_of(agents: Mapping[str, Agent]) -> str:
    """The policy id (:func:`trajgym.trajectory.units.policy_id`) of agents playing their roles."""
    return policy_id(agent.describe(role) for role, agent in agents.items())


def support_messages(messages: list[dict[str, Any]], sender: str) -> str:
    """The text of every chat message from ``sender`` in ``messages``, joined."""
    return "\n".join(m.get("content") or "" for m in messages
                     if m.get("role") == "user" and m.get("name") == sender)
