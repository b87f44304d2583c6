"""The agent interface: a role's new messages and structured info in, one action (text) out.

An agent sees what the env would show the role: new chat messages in the OpenAI format and the
info dict (tool schemas, tool results, injected faults). Scripted agents may also read the
scenario instance from their :class:`AgentContext`; that is what makes them simulators and
oracles rather than learners.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

from trajgym.scenario.loader import ScenarioInstance


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
    """Base of every agent. Subclasses set ``kind`` and implement :meth:`act`."""

    kind: ClassVar[str]
    name: str = ""
    model: str | None = None
    generation: dict[str, Any] | None = None
    """Set by model agents after each action: token ids, logprobs, sampling settings, usage. The
    runner copies it into the step record, so trainers need not re-tokenize."""

    def __init__(self) -> None:
        self.name = self.name or self.kind

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
        """Settings recorded in the trajectory (sampling settings for model agents)."""
        return {}

    def describe(self, role: str) -> dict[str, Any]:
        return {"role": role, "name": self.name, "kind": self.kind, "model": self.model,
                "config": self.config()}


def support_messages(messages: list[dict[str, Any]], sender: str) -> str:
    """The text of every chat message from ``sender`` in ``messages``, joined."""
    return "\n".join(m.get("content") or "" for m in messages
                     if m.get("role") == "user" and m.get("name") == sender)
