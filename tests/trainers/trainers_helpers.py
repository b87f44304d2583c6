"""Helpers of the trainer tests (a module of its own: conftest files are not for importing)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from trajgym.agents import Agent, make_agent
from trajgym.agents.base import AgentContext
from trajgym.agents.chat import ChatAgent, generation
from trajgym.trajectory.schema import Trajectory
from trajgym.trajectory.scored import ScoredTrajectory, group_key

SCENARIOS = ["refund_damaged_item", "employee_onboarding", "count_words"]
"""One scenario per domain: customer_support, workflow, tool_use."""


def scored(traj: Trajectory, total: float | None = 1.0, *, rank: int | None = None, source: str = "",
           excluded: str | None = None, scores: dict[str, Any] | None = None) -> ScoredTrajectory:
    """A scored record of ``traj`` with a known total (an excluded one has none)."""
    return ScoredTrajectory(trajectory=traj, source=source, scores=scores or {}, total=total,
                            success=None if total is None else total == 1.0,
                            blame="infrastructure" if excluded else None, excluded=excluded,
                            group=group_key(traj), rank=rank)


def with_support_action(traj: Trajectory, nth: int, action: dict[str, Any], episode: str) -> Trajectory:
    """A copy of ``traj`` whose ``nth`` support step (0-based) took ``action`` instead."""
    copy = traj.model_copy(deep=True, update={"episode_id": episode})
    step = [s for s in copy.steps if s.role == "support"][nth]
    step.action = json.dumps(action)
    return copy


class ReplayChatAgent(ChatAgent):
    """A model agent without a model: it answers what the oracle would do, through
    :meth:`ChatAgent.answer` (its history is a model agent's), once in ``<tool_call>`` text, and its
    first answer is malformed (no content, no call), as a small model's may be."""

    kind: ClassVar[str] = "replay_oracle"

    def __init__(self) -> None:
        super().__init__(name="replay_oracle")
        self.inner: Agent = make_agent("oracle")

    def reset(self, ctx: AgentContext) -> None:
        super().reset(ctx)
        self.inner.reset(ctx)

    def act(self, messages: list[dict[str, Any]], info: dict[str, Any]) -> str:
        self.observe(messages)
        self.calls += 1
        if self.calls == 1:
            action, fmt = self.answer(None)
        else:
            msg = json.loads(self.inner.act(messages, info))
            calls = msg.get("tool_calls")
            if calls and self.calls == 3:
                fn = calls[0]["function"]
                text = f'<tool_call>\n{{"name": "{fn["name"]}", "arguments": {fn["arguments"]}}}\n</tool_call>'
                action, fmt = self.answer(text)
            else:
                action, fmt = self.answer(msg.get("content"), calls)
        self.generation = generation("scripted", tool_call_format=fmt,
                                     weights_id="sha256:0123456789abcdef")
        return action

    async def generate(self, info: dict[str, Any]) -> str:
        raise NotImplementedError("played synchronously")
