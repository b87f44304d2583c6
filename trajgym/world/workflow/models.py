"""The workflow world's state: a business process as a dependency graph of steps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field

StepStatus = Literal["pending", "done", "compensated"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(Strict):
    """One step of the process, run in an external ``system``."""

    title: str
    system: str
    depends_on: list[str] = Field(default_factory=list)
    needs_approval: bool = False
    compensation: str | None = Field(default=None, description="how the step is undone; None: it cannot be")
    deadline_turn: int | None = Field(default=None, ge=0)
    status: StepStatus = "pending"
    completed_turn: int | None = None
    late: bool = False
    output: dict[str, Any] = Field(default_factory=dict, description="what the system returns when the step runs")


class Approval(Strict):
    step_id: str
    reason: str
    status: Literal["pending", "approved", "denied"] = "pending"
    note: str | None = None
    requests: int = 1


class WorkflowState(Strict):
    """A process: its steps, the approvals asked for, and an audit log."""

    today: dt.date
    process: str
    requester: str
    steps: dict[str, Step] = Field(min_length=1)
    approvals: dict[str, Approval] = Field(default_factory=dict)
    log: list[str] = Field(default_factory=list)

    def graph(self) -> nx.DiGraph:
        """Dependency -> dependent edges."""
        g = nx.DiGraph()
        g.add_nodes_from(self.steps)
        for sid, step in self.steps.items():
            g.add_edges_from((dep, sid) for dep in step.depends_on if dep in self.steps)
        return g

    def entity_problems(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        for sid, step in self.steps.items():
            for i, dep in enumerate(step.depends_on):
                if dep not in self.steps:
                    yield ("steps", sid, "depends_on", i), (
                        f"step '{dep}' does not exist (defined: {', '.join(sorted(self.steps))})")
        try:
            cycle = nx.find_cycle(self.graph())
        except nx.NetworkXNoCycle:
            cycle = []
        if cycle:
            path = " -> ".join([*(u for u, _ in cycle), cycle[0][0]])
            yield ("steps", cycle[0][1], "depends_on"), f"the steps depend on each other in a cycle: {path}"
        for aid, approval in self.approvals.items():
            if approval.step_id not in self.steps:
                yield ("approvals", aid, "step_id"), f"step '{approval.step_id}' does not exist"
